// Rate-limit test: one client reads faster than its policy allows and
// checks the limiter's contract: allowed responses carry RateLimit-Policy
// and RateLimit; refused ones are 429 problem+json with Retry-After (whole
// seconds, at least 1) and the same headers; and no more requests get
// through than the policy's burst plus its rate over the run.
//
// Start the server with a small read policy, matching LIMIT_RATE and
// LIMIT_BURST here (defaults 5 and 10):
//
//   RATE_LIMIT_READ='5/1s,burst=10' RATE_LIMIT_WRITE=off api-perf
//   k6 run -e BASE_URL=http://127.0.0.1:8080 k6/ratelimit.js

import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate } from 'k6/metrics';
import { BASE_URL, ROUTES, seed, summaryTrendStats } from './lib/mix.js';

const RATE = parseFloat(__ENV.LIMIT_RATE || '5'); // per second
const BURST = parseInt(__ENV.LIMIT_BURST || '10', 10);
const SECONDS = 6;
const SEND_RATE = 40; // per second, well above RATE

const allowed = new Counter('ratelimit_allowed');
const refused = new Counter('ratelimit_refused');
const headersOK = new Rate('ratelimit_headers_ok');

// The most a GCRA policy can let through in the run: the burst at once,
// then the rate, plus one interval of slack for the edges of the run.
const MAX_ALLOWED = Math.ceil(BURST + RATE * (SECONDS + 1) + 1);

export const options = {
  scenarios: {
    flood: {
      executor: 'constant-arrival-rate',
      rate: SEND_RATE,
      timeUnit: '1s',
      duration: `${SECONDS}s`,
      preAllocatedVUs: 5,
      maxVUs: 20,
    },
  },
  thresholds: {
    ratelimit_refused: ['count>0'],
    ratelimit_allowed: [`count>=${BURST}`, `count<=${MAX_ALLOWED}`],
    ratelimit_headers_ok: ['rate==1'],
    // Only 200 and 429 are expected; anything else is a failure.
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
  },
  summaryTrendStats,
};

export function setup() {
  // Writes are not limited in this test (RATE_LIMIT_WRITE=off), and the
  // read budget must be untouched when the flood starts.
  return seed(1);
}

const hasPolicy = (r) => /^"[^"]+";q=\d+;w=\d+/.test(r.headers['Ratelimit-Policy'] || '');
const hasState = (r) => /^"[^"]+";r=\d+;t=\d+/.test(r.headers.Ratelimit || '');

export default function (data) {
  const res = http.get(`${BASE_URL}/products/${data.ids[0]}`, {
    tags: { name: ROUTES.getProduct },
    responseCallback: http.expectedStatuses(200, 429),
  });
  if (res.status === 200) {
    allowed.add(1);
    const ok = check(res, {
      'allowed: RateLimit-Policy': hasPolicy,
      'allowed: RateLimit': hasState,
    });
    headersOK.add(ok);
    return;
  }
  refused.add(1);
  const ok = check(res, {
    'refused: 429': (r) => r.status === 429,
    'refused: Retry-After is whole seconds >= 1': (r) => /^[1-9]\d*$/.test(r.headers['Retry-After'] || ''),
    'refused: RateLimit-Policy': hasPolicy,
    'refused: RateLimit shows r=0': (r) => /;r=0;/.test(r.headers.Ratelimit || ''),
    'refused: problem+json': (r) => (r.headers['Content-Type'] || '').startsWith('application/problem+json'),
    'refused: status 429 in the body': (r) => r.json('status') === 429,
  });
  headersOK.add(ok);
}
