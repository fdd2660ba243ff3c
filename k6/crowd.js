// Crowd test: many clients behind one trusted proxy, each far below its
// own limit. Every request reads one warm product with an X-Forwarded-For
// naming one of CLIENTS addresses, so the server's rate limiter keeps one
// bucket per client; none of them comes near its policy, so every request
// must be answered 200 (a 429 fails the run). This is the traffic that
// made a limiter with a Redis round trip per request expensive; watch
// apiperf_ratelimit_redis_calls_total against the requests served.
//
// Start the server with the limiter on and the load generator's address
// trusted, for example:
//
//   REDIS_URL=redis://127.0.0.1:6379 RATE_LIMIT_READ=1000/1s \
//     TRUSTED_PROXIES=127.0.0.1 api-perf
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e PROFILE=local k6/crowd.js
//
// CLIENTS (default 5000) sets the crowd's size. scripts/k6-smoke.sh runs it
// in CI with 200 clients and checks the Redis calls per request.

import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, ROUTES, headers, pick, seed, summaryTrendStats } from './lib/mix.js';

const CLIENTS = parseInt(__ENV.CLIENTS || '5000', 10);
const RATE = pick({ ci: 100, local: 1500, staging: 8000 }); // requests per second
const DURATION = pick({ ci: '20s', local: '60s', staging: '5m' });

export const options = {
  scenarios: {
    crowd: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(10, Math.ceil(RATE / 50)),
      maxVUs: Math.max(50, Math.ceil(RATE / 5)),
    },
  },
  thresholds: {
    // No client is near its limit: a 429 is a failure here.
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    [`http_req_duration{name:${ROUTES.getProduct}}`]: ['p(99)<200'],
  },
  summaryTrendStats,
};

export function setup() {
  return seed(1);
}

// client returns the i-th address of the crowd, 10.0.0.1 upwards.
function client(i) {
  return `10.${Math.floor(i / 62500)}.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`;
}

export default function (data) {
  const h = headers();
  h['X-Forwarded-For'] = client(Math.floor(Math.random() * CLIENTS));
  const res = http.get(`${BASE_URL}/products/${data.ids[0]}`, { headers: h, tags: { name: ROUTES.getProduct } });
  check(res, { 'status is 200': (r) => r.status === 200 });
}
