// POST a fixed body at a constant arrival rate with p99 / p99.9 thresholds (see lib.js).
// BODY_BYTES: body size (default 1024); POST_PATH: the origin's POST sink (default /post).
//   k6 run -e BASE_URL=http://127.0.0.1:28001 -e BODY_BYTES=65536 -e RATE=500 bench/k6/post.js
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, constantRateOptions, env, num } from './lib.js';

const BODY = 'x'.repeat(num('BODY_BYTES', 1024));
const URL = BASE_URL + env('POST_PATH', '/post');
const PARAMS = { headers: { 'Content-Type': 'application/octet-stream' } };

export const options = constantRateOptions();

export default function () {
  const res = http.post(URL, BODY, PARAMS);
  check(res, { 'status is 200': (r) => r.status === 200 });
}
