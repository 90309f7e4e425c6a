// The overhead benchmark's paired statistics (bench/lib/paired.ts): the median's order-statistic
// interval covers the median about 95 % of the time, and the client order of a round goes through
// every permutation.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { median, medianCi95, pairedFigure, roundOrder } from '../bench/lib/paired.ts'

test('medianCi95: the ranks of the binomial tail, and the whole range below 6 values', () => {
  assert.deepEqual(medianCi95([5, 1, 4, 2, 3, 9, 8, 7, 6, 10, 12, 11]), [3, 10])
  assert.deepEqual(medianCi95(Array.from({ length: 100 }, (_, i) => i + 1)), [40, 61])
  assert.deepEqual(medianCi95([3, 1, 2]), [1, 3])
  assert.deepEqual(medianCi95([7]), [7, 7])
})

test('medianCi95: covers the true median of a skewed distribution in about 95 % of samples', () => {
  // A deterministic generator (no flaky seed): exponential values, true median ln 2.
  let state = 12345
  const uniform = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31
    return (state + 0.5) / 2 ** 31
  }
  const trueMedian = Math.LN2
  for (const n of [12, 30]) {
    let covered = 0
    const samples = 2000
    for (let s = 0; s < samples; s++) {
      const xs = Array.from({ length: n }, () => -Math.log(uniform()))
      const [lo, hi] = medianCi95(xs)
      if (lo <= trueMedian && trueMedian <= hi) covered++
    }
    const share = covered / samples
    assert.ok(share >= 0.94 && share <= 0.995, `n ${n}: covered ${share}`)
  }
})

test('median: of an even count, the mean of the middle two', () => {
  assert.equal(median([4, 1, 3, 2]), 2.5)
})

test('roundOrder: 6 rounds of 3 clients give the 6 orders, each client 2 times in each place', () => {
  const orders = Array.from({ length: 6 }, (_, r) => roundOrder(['a', 'b', 'c'], r).join(''))
  assert.equal(new Set(orders).size, 6)
  for (const place of [0, 1, 2])
    for (const client of 'abc') assert.equal(orders.filter((o) => o[place] === client).length, 2)
})

test('pairedFigure: median and interval rounded, and every round kept for pooling runs', () => {
  const rounds = [1.234, 0.987, 1.111, 1.05, 0.9, 1.2, 1.01]
  const figure = pairedFigure(rounds, 2)
  assert.equal(figure.median, 1.05)
  assert.deepEqual(figure.byRound, [1.23, 0.99, 1.11, 1.05, 0.9, 1.2, 1.01])
  assert.ok(figure.ci95[0] <= figure.median && figure.median <= figure.ci95[1])
})
