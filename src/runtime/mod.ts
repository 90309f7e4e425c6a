/**
 * The few runtime differences the core needs (timers, clock, environment), behind one interface.
 * Nothing else in `src/core` touches a runtime global.
 *
 * @module
 */
export { type Clock, systemClock } from './clock.ts'
export { type RuntimeName, readEnv, runtimeName } from './env.ts'
export { type Runtime, runtimeWithClock, systemRuntime } from './runtime.ts'
export {
  holdOpenUntil,
  type SleepOptions,
  settleWithin,
  sleep,
  startInterval,
  startTimer,
  stopTimer,
  type TimerHandle,
  type TimerOptions,
} from './timers.ts'
