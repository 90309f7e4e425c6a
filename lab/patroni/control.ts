/**
 * A Patroni cluster as the lab's cluster manager (`npm run lab -- up --manager patroni`): one etcd
 * and one Patroni per member on loopback (`127.0.0.31`, `.32`, ...; one PostgreSQL port and one
 * REST port shared by every member), PostgreSQL and Patroni as the server user. Patroni decides
 * everything; the lab only injects faults (kill = SIGKILL of the member's Patroni and postmaster,
 * stop = Patroni's own clean shutdown, switchover through `patronictl`) and watches the roles.
 *
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nowMs } from '../clock.ts'
import type { ControlOptions } from '../cluster.ts'
import type { ControlPlane } from '../control-plane.ts'
import { EventLog } from '../events.ts'
import { APP_PASSWORD, APP_USER, DATABASE, sleep, within } from '../instance.ts'
import { chownR, copyAsServerUser, findPgBin, type PgBin, removeTree, serverUser } from '../pg-bin.ts'
import { dropPublic, endSessions, fingerprint, replayedUpToNow } from '../pool.ts'
import { releasePort } from '../port-reservations.ts'
import { canListen, freePort } from '../ports.ts'
import { alive, killTree, postmasterOf } from '../procs.ts'
import { labRoot } from '../scratch.ts'
import { removeOrphanSegments } from '../shared-memory.ts'
import { ensureTemplate } from '../template.ts'
import type { LabNode, LabStatus } from '../types.ts'
import {
  etcdArgs,
  type MemberLayout,
  memberConfig,
  type PatroniBins,
  requirePatroniBins,
  TIMINGS,
} from './config.ts'
import { Watcher } from './watch.ts'

const firstOctet = 31
const SCOPE = 'pgha-lab'

interface Member extends MemberLayout {
  patroni?: ChildProcess
  state: LabNode['state']
}

/** A port free on every one of `hosts` (a free one on the first, checked on the others). */
async function portFreeOn(hosts: string[], avoid: number[] = []): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await freePort(hosts[0])
    if (avoid.includes(port)) continue
    const ok = await Promise.all(hosts.slice(1).map((h) => canListen(h, port)))
    if (ok.every(Boolean)) return port
    releasePort(port)
  }
  throw new Error(`found no port free on ${hosts.join(', ')} after 20 attempts`)
}

export class PatroniControl implements ControlPlane {
  readonly events: EventLog
  upMs = 0
  private bins!: PatroniBins
  private bin!: PgBin
  private members: Member[] = []
  private watcher!: Watcher
  private etcd?: ChildProcess
  private etcdPort = 0
  private pgPort = 0
  private restPort = 0
  private chain: Promise<unknown> = Promise.resolve()
  private closed = false
  /** The catalogs at bring-up (replication slots left out: they follow the leader). */
  private pristine?: string

  constructor(
    readonly options: ControlOptions,
    private readonly log: (m: string) => void,
  ) {
    mkdirSync(join(options.dir, 'logs'), { recursive: true })
    this.events = new EventLog(join(options.dir, 'events.jsonl'), log)
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn)
    this.chain = run.catch(() => {})
    return run
  }

  async up(): Promise<void> {
    const started = performance.now()
    const o = this.options
    this.bins = requirePatroniBins()
    this.bin = findPgBin()
    const template = await ensureTemplate(this.bin, labRoot(), this.log)
    const ids = Array.from({ length: o.nodes }, (_, i) => `127.0.0.${firstOctet + i}`)
    this.pgPort = o.port ?? (await portFreeOn(ids))
    this.restPort = await portFreeOn(ids, [this.pgPort])
    this.etcdPort = await freePort()
    const peerPort = await freePort()
    for (const id of ids) {
      const name = `n${id.split('.').pop()}`
      this.members.push({
        id,
        name,
        pgPort: this.pgPort,
        restPort: this.restPort,
        dataDir: join(o.dir, 'data', id),
        home: join(o.dir, 'patroni', name),
        state: 'stopped',
      })
    }
    this.watcher = new Watcher(this.members, this.events, this.log)
    await this.startEtcd(join(o.dir, 'etcd', 'data'), peerPort)
    // Every member starts from the same cleanly shut down template: the first becomes the
    // leader (a new timeline), the others stream from it without a base backup.
    mkdirSync(join(o.dir, 'data'), { recursive: true })
    chownR(join(o.dir, 'data'))
    await Promise.all(this.members.map((m) => copyAsServerUser(template, m.dataDir)))
    for (const m of this.members) {
      mkdirSync(m.home, { recursive: true })
      const config = memberConfig(m, {
        scope: SCOPE,
        etcdPort: this.etcdPort,
        bin: this.bin,
        synchronous: !o.async,
      })
      writeFileSync(join(m.home, 'patroni.yml'), JSON.stringify(config, null, 2))
    }
    chownR(join(o.dir, 'patroni'))
    const [first, ...rest] = this.members
    this.startPatroni(first!)
    await this.waitFor(60_000, 'the first member to lead', async () => {
      await this.watcher.poll()
      return this.watcher.seen.get(first!.id) === 'writer'
    })
    for (const m of rest) this.startPatroni(m)
    const writer = await this.waitForWriter(90_000)
    this.pristine = await fingerprint(this.watcher.admin(writer.id), { slots: false })
    this.watcher.started = true
    this.watcher.start()
    this.upMs = performance.now() - started
    this.events.emit('up', undefined, {
      ms: Math.round(this.upMs),
      nodes: o.nodes,
      pg: this.bin.version,
      manager: 'patroni',
    })
  }

  private async startEtcd(dataDir: string, peerPort: number): Promise<void> {
    mkdirSync(dataDir, { recursive: true })
    const fd = openSync(join(this.options.dir, 'logs', 'etcd.log'), 'a')
    this.etcd = spawn(this.bins.etcd, etcdArgs(dataDir, this.etcdPort, peerPort), {
      detached: true,
      stdio: ['ignore', fd, fd],
    })
    closeSync(fd)
    this.etcd.on('error', (e) => this.log(`etcd: ${e.message}`))
    this.etcd.unref()
    await this.waitFor(30_000, 'etcd to answer', async () => {
      const res = await fetch(`http://127.0.0.1:${this.etcdPort}/version`).catch(() => undefined)
      return res?.ok === true
    })
  }

  private startPatroni(m: Member): void {
    const user = serverUser()
    const fd = openSync(join(this.options.dir, 'logs', `${m.id}.log`), 'a')
    const child = spawn(this.bins.patroni, [join(m.home, 'patroni.yml')], {
      detached: true,
      stdio: ['ignore', fd, fd],
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', HOME: m.home },
    })
    closeSync(fd)
    child.on('error', (e) => this.log(`patroni ${m.name}: ${e.message}`))
    child.on('exit', (code, signal) => {
      if (m.patroni === child) m.patroni = undefined
      if (!this.closed) this.log(`patroni ${m.name} exited (code ${code}, signal ${signal})`)
    })
    child.unref()
    m.patroni = child
    m.state = 'running'
  }

  private async waitFor(timeoutMs: number, what: string, check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (this.closed) throw new Error('the lab is going down')
      if (await check().catch(() => false)) return
      await sleep(50)
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
  }

  private member(target: string): Member {
    const id = target === 'writer' ? this.watcher.writer : target
    if (!id) throw new Error('the cluster has no writer right now')
    const m = this.members.find((x) => x.id === id || x.name === id)
    if (!m) {
      throw new Error(
        `unknown member "${target}"; members: ${this.members.map((x) => x.id).join(', ')}, writer`,
      )
    }
    return m
  }

  /** SIGKILL of the member's Patroni, then of its postmaster and every backend. */
  async kill(target: string): Promise<void> {
    const m = this.member(target)
    this.events.emit('fault', m.id, { fault: 'kill' })
    this.expectAfterLoss(m)
    const pid = m.patroni?.pid
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL')
    const postmaster = postmasterOf(m.dataDir)
    if (postmaster) killTree(postmaster)
    m.state = 'killed'
    this.watcher.lost(m.id, 'killed')
    await this.waitFor(5000, `${m.id} to be gone`, async () => !postmasterOf(m.dataDir) && !alive(pid))
  }

  /** Patroni's clean shutdown (SIGTERM): it stops PostgreSQL and releases the leader key. */
  async stop(target: string): Promise<void> {
    const m = this.member(target)
    this.events.emit('fault', m.id, { fault: 'stop' })
    this.expectAfterLoss(m)
    const pid = m.patroni?.pid
    if (pid && alive(pid)) process.kill(pid, 'SIGTERM')
    m.state = 'stopped'
    await this.waitFor(60_000, `${m.id} to stop`, async () => !alive(pid) && !postmasterOf(m.dataDir))
    this.watcher.lost(m.id, 'stopped')
  }

  /** Starts the member's Patroni again; it rejoins as a replica (pg_rewind if needed). */
  async start(id: string): Promise<void> {
    const m = this.member(id)
    if (m.patroni && alive(m.patroni.pid)) throw new Error(`${m.id} is already running`)
    const before = nowMs()
    const release = this.watcher.expectChange()
    try {
      // A killed predecessor's segment would leak once its postmaster.pid is gone (shared-memory.ts).
      removeOrphanSegments()
      rmSync(join(m.dataDir, 'postmaster.pid'), { force: true })
      this.startPatroni(m)
      await this.events.wait({ type: 'reader-rejoined', node: m.id, afterMs: before, timeoutMs: 120_000 })
    } finally {
      release()
    }
  }

  /** The watcher polls fast until a lost writer is replaced (another member is writer-ready). */
  private expectAfterLoss(m: Member): void {
    if (this.watcher.writer === m.id) this.watcher.expectWriter()
    else this.watcher.expectChange()
  }

  /** `patronictl switchover` to `id` (default: Patroni's choice, the synchronous standby). */
  async switchover(id?: string): Promise<void> {
    const leader = this.member('writer')
    const candidate = id ? this.member(id) : undefined
    if (candidate === leader) throw new Error(`${id} is already the writer`)
    const before = nowMs()
    this.events.emit('switchover', leader.id, { to: candidate?.id ?? null })
    const release = this.watcher.expectChange()
    try {
      const args = ['-c', join(leader.home, 'patroni.yml'), 'switchover', '--leader', leader.name, '--force']
      if (candidate) args.push('--candidate', candidate.name)
      await this.run(this.bins.patronictl, [...args, SCOPE])
      const ready = await this.events.wait({ type: 'writer-ready', afterMs: before, timeoutMs: 60_000 })
      if (ready.node === leader.id) throw new Error(`switchover: ${leader.id} is still the writer`)
      await this.events.wait({
        type: 'reader-rejoined',
        node: leader.id,
        afterMs: before,
        timeoutMs: 120_000,
      })
    } finally {
      release()
    }
  }

  private run(cmd: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, LANG: 'C.UTF-8' },
      })
      let out = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (out += d))
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
      child.on('error', reject)
      child.on('close', (code) => {
        clearTimeout(timer)
        this.log(`${cmd.split('/').pop()} ${args.join(' ')}: ${out.trim().replaceAll('\n', ' | ')}`)
        if (code === 0) resolve(out)
        else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${out.trim()}`))
      })
    })
  }

  /**
   * Readies the cluster for its next user (lab/pool.ts; a Patroni start costs ~4 s of CPU, mostly
   * Python): true once every member runs, one leads with the others streaming and a synchronous
   * standby named, no session is left but Patroni's and the lab's own, and the catalogs are as at
   * bring-up once what tests made in `public` is dropped. Unlike the lab's own clusters, the leader
   * may be another member than at bring-up, on a later timeline: Patroni picks the leader anyway.
   */
  async park(): Promise<boolean> {
    const unfit = await this.unfitForNextUser()
    if (unfit) this.log(`not parked: ${unfit}`)
    else this.events.reset()
    return unfit === undefined
  }

  /** Why the cluster cannot go to a next user as it is (after readying it), or undefined. */
  private async unfitForNextUser(): Promise<string | undefined> {
    if (this.closed || this.pristine === undefined) return 'closing, or not up'
    if (!this.members.every((m) => m.state === 'running' && m.patroni && alive(m.patroni.pid)))
      return 'a member is not running'
    const writer = await this.waitForWriter(5_000).catch(() => undefined)
    if (!writer) return 'no writer with every member streaming and a synchronous standby'
    const res = await fetch(`http://${writer.id}:${this.restPort}/cluster`).catch(() => undefined)
    const cluster = (await res?.json().catch(() => undefined)) as
      | {
          members?: { name: string; role: string; state: string; pending_restart?: boolean }[]
          pause?: boolean
        }
      | undefined
    const leader = this.members.find((m) => m.id === writer.id)!
    const members = cluster?.members ?? []
    const settled =
      !cluster?.pause &&
      members.length === this.members.length &&
      members.every(
        (m) =>
          (m.state === 'running' || m.state === 'streaming') &&
          !m.pending_restart &&
          (m.role === 'leader') === (m.name === leader.name),
      )
    if (!settled) return `Patroni's view of the members is not settled: ${JSON.stringify(cluster)}`
    // Patroni's own connections (over the socket) name themselves 'Patroni'.
    for (const m of this.members)
      if (!(await endSessions(this.watcher.admin(m.id), 5_000, ['Patroni'])))
        return 'sessions of the last user would not end'
    for (const m of this.members.filter((x) => x !== leader)) {
      const [r] = await within(2_000, this.watcher.admin(m.id)`SELECT pg_is_in_recovery() AS standby`)
      if (!r!.standby) return `${m.id} is not a standby`
    }
    const admin = this.watcher.admin(leader.id)
    await dropPublic(admin)
    if ((await fingerprint(admin, { slots: false })) !== this.pristine)
      return 'the catalogs differ from bring-up'
    // Every replica has replayed everything up to now (the drops included).
    return await replayedUpToNow(
      admin,
      this.members.filter((x) => x !== leader).map((m) => ({ id: m.id, admin: this.watcher.admin(m.id) })),
    )
  }

  /** A parked cluster taken by its next user: Patroni's timings are its own (no lab timings apply). */
  async adopt(): Promise<void> {
    await this.waitForWriter(10_000)
  }

  private unsupported(op: string): Promise<never> {
    return Promise.reject(
      new Error(`${op} is not available with --manager patroni; kill, stop, start and switchover are`),
    )
  }
  freeze(): Promise<void> {
    return this.unsupported('freeze')
  }
  blackhole(): Promise<void> {
    return this.unsupported('blackhole')
  }
  latency(): Promise<void> {
    return this.unsupported('latency')
  }
  heal(): Promise<void> {
    return this.unsupported('heal')
  }
  addReader(): Promise<LabNode> {
    return this.unsupported('addReader')
  }
  remove(): Promise<void> {
    return this.unsupported('remove')
  }

  /** A writable writer (a synchronous commit succeeds) with every running member streaming. */
  async waitForWriter(timeoutMs = 30_000): Promise<LabNode> {
    let last = 'no writer'
    let node: LabNode | undefined
    await this.waitFor(timeoutMs, 'a writer with streaming replicas', async () => {
      await this.watcher.poll()
      const w = this.members.find((m) => this.watcher.seen.get(m.id) === 'writer')
      if (!w) {
        last = 'no writer'
        return false
      }
      const want = this.members.filter((m) => m !== w && m.state === 'running').map((m) => m.name)
      const rows = await within(
        2000,
        this.watcher.admin(
          w.id,
        )`SELECT application_name::text AS name FROM pg_stat_replication WHERE state = 'streaming'`,
      )
      const missing = want.filter((n) => !rows.some((r) => r.name === n))
      if (missing.length) {
        last = `not streaming yet: ${missing.join(', ')}`
        return false
      }
      // In synchronous_mode a commit is acknowledged only once the sync standby has it: wait for
      // Patroni to have named one, or a kill now could find no member it may promote.
      if (!this.options.async && want.length > 0) {
        const res = await fetch(`http://${w.id}:${w.restPort}/cluster`)
        const { members } = (await res.json()) as { members: { role: string; state: string }[] }
        if (!members.some((m) => m.role === 'sync_standby' && m.state === 'running')) {
          last = 'Patroni has no synchronous standby yet'
          return false
        }
      }
      await within(
        5000,
        this.watcher.admin(w.id)`SELECT pg_catalog.pg_logical_emit_message(true, 'pgha-lab', 'ready')`,
      )
      node = this.nodeOf(w)
      return true
    }).catch((e) => {
      throw new Error(`${(e as Error).message}: ${last}`)
    })
    return node!
  }

  private nodeOf(m: Member): LabNode {
    const seen = this.watcher?.seen.get(m.id) ?? 'down'
    return { id: m.id, role: seen, host: m.id, port: m.pgPort, state: m.state, fault: 'none' }
  }

  status(): LabStatus {
    const o = this.options
    const first = this.members[0]?.id ?? `127.0.0.${firstOctet}`
    return {
      dir: o.dir,
      dialect: 'pg',
      manager: 'patroni',
      port: this.pgPort,
      database: DATABASE,
      user: APP_USER,
      password: APP_PASSWORD,
      nodes: this.members.map((m) => this.nodeOf(m)),
      writer: this.watcher?.writer ?? null,
      // No endpoints in front of a Patroni cluster: both name the first member.
      clusterEndpoint: { host: first, port: this.pgPort },
      readerEndpoint: { host: first, port: this.pgPort },
      instanceHostPattern: '?',
      events: this.events.events,
      options: {
        nodes: o.nodes,
        dialect: 'pg',
        manager: 'patroni',
        promoteAfterMs: o.promoteAfterMs,
        endpointLagMs: o.endpointLagMs,
        probeTimeoutMs: o.probeTimeoutMs,
        async: o.async,
      },
      patroni: {
        scope: SCOPE,
        restPort: this.restPort,
        etcd: `http://127.0.0.1:${this.etcdPort}`,
        ...TIMINGS,
        synchronousMode: !o.async,
        members: this.members.map((m) => ({
          id: m.id,
          name: m.name,
          restUrl: `http://${m.id}:${m.restPort}`,
        })),
      },
      pgVersion: this.bin?.version ?? '',
      pgBin: this.bin?.dir ?? '',
      targets: { upMs: Math.round(this.upMs), upTargetMs: 60_000, killToWriterReadyTargetMs: 15_000 },
    }
  }

  processes(): { id: string; pgPort: number; dataDir: string }[] {
    return this.members.map((m) => ({ id: m.id, pgPort: m.pgPort, dataDir: m.dataDir }))
  }

  /** Kills every Patroni, PostgreSQL and etcd; removes the data (or the whole folder). */
  async down(removeDir: boolean): Promise<void> {
    this.closed = true
    await this.watcher?.close()
    for (const m of this.members) {
      const pid = m.patroni?.pid
      if (pid && alive(pid)) process.kill(pid, 'SIGKILL')
      const postmaster = postmasterOf(m.dataDir)
      if (postmaster) killTree(postmaster)
    }
    const etcd = this.etcd?.pid
    if (etcd && alive(etcd)) process.kill(etcd, 'SIGKILL')
    for (let i = 0; i < 100 && this.members.some((m) => postmasterOf(m.dataDir)); i++) await sleep(20)
    const dir = this.options.dir
    if (removeDir) removeTree(dir)
    else for (const sub of ['data', 'patroni', 'etcd']) removeTree(join(dir, sub))
  }
}
