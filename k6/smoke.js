// Smoke test: a short, light run of the whole mix plus one pass over the
// routes' contracts (ETag and 304, 404 as problem+json, 422 on a bad body).
// It answers "does this build work at all" in under 30 seconds.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 k6/smoke.js
//
// Run the server with RATE_LIMIT_READ=off RATE_LIMIT_WRITE=off (see lib/mix.js).

import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, mix, seed, thresholds, summaryTrendStats } from './lib/mix.js';

export const options = {
  scenarios: {
    tour: { executor: 'per-vu-iterations', vus: 1, iterations: 1, exec: 'tour', maxDuration: '10s' },
    mix: {
      executor: 'constant-arrival-rate',
      rate: 50,
      timeUnit: '1s',
      duration: '20s',
      preAllocatedVUs: 5,
      maxVUs: 20,
      exec: 'traffic',
      startTime: '1s',
    },
  },
  thresholds: thresholds({ p95: 100, p99: 300 }),
  summaryTrendStats,
};

export function setup() {
  return seed(20);
}

export function traffic(data) {
  mix(data);
}

// tour checks the parts of the contract a load run does not look at.
export function tour(data) {
  const id = data.ids[0];
  const first = http.get(`${BASE_URL}/products/${id}`, { tags: { name: 'GET /products/{id}' } });
  check(first, {
    'tour: product 200 with ETag': (r) => r.status === 200 && !!r.headers.Etag,
    'tour: JSON content type': (r) => (r.headers['Content-Type'] || '').startsWith('application/json'),
  });
  const again = http.get(`${BASE_URL}/products/${id}`, {
    headers: { 'If-None-Match': first.headers.Etag },
    tags: { name: 'GET /products/{id}' },
    responseCallback: http.expectedStatuses(304),
  });
  check(again, { 'tour: If-None-Match gives 304': (r) => r.status === 304 });

  const missing = http.get(`${BASE_URL}/products/999999999999`, {
    tags: { name: 'GET /products/{id}' },
    responseCallback: http.expectedStatuses(404),
  });
  check(missing, {
    'tour: unknown id is 404': (r) => r.status === 404,
    'tour: 404 is problem+json': (r) => (r.headers['Content-Type'] || '').startsWith('application/problem+json'),
  });
  const bad = http.post(`${BASE_URL}/orders`, JSON.stringify({ product_id: id, quantity: 0 }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'POST /orders' },
    responseCallback: http.expectedStatuses(422),
  });
  check(bad, {
    'tour: quantity 0 is 422': (r) => r.status === 422,
    'tour: 422 names the field': (r) => JSON.stringify(r.json('errors') || []).includes('quantity'),
  });
  const health = http.get(`${BASE_URL}/healthz`, { tags: { name: 'GET /healthz' } });
  check(health, { 'tour: healthz 200': (r) => r.status === 200 });
}
