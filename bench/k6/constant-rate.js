// GET at a constant arrival rate with p99 / p99.9 thresholds (see lib.js for the environment).
// PATHS: comma-separated paths, taken in turn (default /5b).
//   k6 run -e BASE_URL=http://127.0.0.1:28001 -e RATE=2000 -e P99_MS=20 bench/k6/constant-rate.js
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, constantRateOptions, env } from './lib.js';

const PATHS = env('PATHS', '/5b').split(',');

export const options = constantRateOptions();

export default function () {
  const res = http.get(BASE_URL + PATHS[__ITER % PATHS.length]);
  check(res, { 'status is 200': (r) => r.status === 200 });
}
