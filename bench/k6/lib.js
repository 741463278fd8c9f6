// Options shared by coregate's k6 scenarios: an open model (constant arrival rate, so a slow
// target cannot slow the load down) with latency thresholds that fail the run when exceeded.
// k6 exits non-zero (99) when a threshold fails.
//
// Environment (k6 run -e NAME=value ..., or the process environment):
//   BASE_URL   target, e.g. http://127.0.0.1:28001          (default http://127.0.0.1:28001)
//   RATE       requests per second                           (default 1000)
//   DURATION   seconds at that rate                          (default 10)
//   P99_MS     threshold on p99 latency, milliseconds        (default 50)
//   P999_MS    threshold on p99.9 latency, milliseconds      (default 100)
//   VUS        pre-allocated virtual users                   (default 64)
//   MAX_VUS    virtual users k6 may add when responses slow  (default 512)

export function env(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === '' ? fallback : value;
}

export function num(name, fallback) {
  const value = Number(env(name, fallback));
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive number, got ${env(name, fallback)}`);
  }
  return value;
}

export const BASE_URL = env('BASE_URL', 'http://127.0.0.1:28001');

export function constantRateOptions() {
  const rate = num('RATE', 1000);
  const duration = num('DURATION', 10);
  // A run that could not start its iterations on time measured the load generator, not the
  // target: allow at most 1% of them to be dropped.
  const maxDropped = Math.max(1, Math.floor(rate * duration * 0.01));
  return {
    discardResponseBodies: true,
    summaryTrendStats: ['min', 'med', 'avg', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
    scenarios: {
      constant_rate: {
        executor: 'constant-arrival-rate',
        rate: rate,
        timeUnit: '1s',
        duration: `${duration}s`,
        preAllocatedVUs: num('VUS', 64),
        maxVUs: num('MAX_VUS', 512),
      },
    },
    thresholds: {
      http_req_duration: [`p(99)<${num('P99_MS', 50)}`, `p(99.9)<${num('P999_MS', 100)}`],
      http_req_failed: ['rate<0.001'],
      checks: ['rate>0.999'],
      dropped_iterations: [`count<=${maxDropped}`],
    },
  };
}
