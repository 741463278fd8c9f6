// One endpoint of three killed mid-run and brought back, at a constant arrival rate (see
// bench/harness/failover.py, which starts the endpoints, coregate and a small control server).
// The scenario itself asks the control server to kill and restore the endpoint, so the phases
// are timed on k6's own clock:
//
//   before     [0, KILL_AT)                       every endpoint up
//   detecting  [KILL_AT, KILL_AT + DETECT_S)      the failure not yet detected (passive: 1 s)
//   during     [KILL_AT + DETECT_S, RESTORE_AT)   routed around the dead endpoint
//   after      [RESTORE_AT, DURATION)             the endpoint back
//
// Each request is tagged with its phase; the thresholds are the targets: fewer than
// 0.1% failed before and after detection, none after the endpoint returns, and the p99 of
// every phase but the detection under P99_MS.
//
//   k6 run -e BASE_URL=http://127.0.0.1:28110 -e CONTROL_URL=http://127.0.0.1:28114 \
//          -e RATE=1000 -e DURATION=30 -e KILL_AT=10 -e RESTORE_AT=20 bench/k6/failover.js
//
// Environment, besides lib.js's RATE, VUS, MAX_VUS and P99_MS:
//   CONTROL_URL  the control server: POST /kill, POST /restore      (required)
//   DURATION     seconds of load                                     (default 30)
//   KILL_AT      seconds into the run the endpoint is killed        (default DURATION / 3)
//   RESTORE_AT   seconds into the run it is brought back            (default 2 DURATION / 3)
//   DETECT_S     seconds allowed for detection after the kill       (default 1)
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { BASE_URL, env, num } from './lib.js';

const CONTROL_URL = env('CONTROL_URL', '');
const RATE = num('RATE', 1000);
const DURATION = num('DURATION', 30);
const KILL_AT = num('KILL_AT', DURATION / 3);
const RESTORE_AT = num('RESTORE_AT', (2 * DURATION) / 3);
const DETECT_S = num('DETECT_S', 1);
const P99_MS = num('P99_MS', 50);

if (!CONTROL_URL) {
  throw new Error('CONTROL_URL is required (bench/harness/failover.py starts the control server)');
}
if (!(KILL_AT < RESTORE_AT && RESTORE_AT < DURATION)) {
  throw new Error(`need KILL_AT < RESTORE_AT < DURATION, got ${KILL_AT}, ${RESTORE_AT}, ${DURATION}`);
}

const PHASES = ['before', 'detecting', 'during', 'after'];

function thresholds() {
  const t = {
    dropped_iterations: [`count<=${Math.max(1, Math.floor(RATE * DURATION * 0.01))}`],
    'http_req_failed{phase:before}': ['rate<0.001'],
    'http_req_failed{phase:during}': ['rate<0.001'],
    'http_req_failed{phase:after}': ['rate==0'],
    // Reported, not judged: requests in flight when the endpoint died.
    'http_req_failed{phase:detecting}': ['rate<=1'],
    'http_req_duration{phase:detecting}': ['p(99)>=0'],
  };
  for (const phase of ['before', 'during', 'after']) {
    t[`http_req_duration{phase:${phase}}`] = [`p(99)<${P99_MS}`];
  }
  for (const phase of PHASES) {
    t[`http_reqs{phase:${phase}}`] = ['count>=0'];
  }
  return t;
}

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['min', 'med', 'avg', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: `${DURATION}s`,
      preAllocatedVUs: num('VUS', 64),
      maxVUs: num('MAX_VUS', 512),
      exec: 'load',
    },
    kill: {
      executor: 'per-vu-iterations',
      vus: 1,
      iterations: 1,
      startTime: `${KILL_AT}s`,
      exec: 'kill',
    },
    restore: {
      executor: 'per-vu-iterations',
      vus: 1,
      iterations: 1,
      startTime: `${RESTORE_AT}s`,
      exec: 'restore',
    },
  },
  thresholds: thresholds(),
};

/** The phase of the run at this moment. */
function phase() {
  const elapsed = (Date.now() - exec.scenario.startTime) / 1000;
  if (elapsed < KILL_AT) return 'before';
  if (elapsed < KILL_AT + DETECT_S) return 'detecting';
  if (elapsed < RESTORE_AT) return 'during';
  return 'after';
}

export function load() {
  const res = http.get(`${BASE_URL}/item`, { tags: { phase: phase() } });
  check(res, { 'status is 200': (r) => r.status === 200 });
}

function control(action) {
  const res = http.post(`${CONTROL_URL}/${action}`, null, { tags: { phase: 'control' } });
  if (res.status !== 200) {
    throw new Error(`control ${action}: ${res.status} ${res.body}`);
  }
}

export function kill() {
  control('kill');
}

export function restore() {
  control('restore');
}
