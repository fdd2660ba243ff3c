// Load test: the realistic mix at a rising, then steady, then falling
// arrival rate (requests per second, independent of how fast the server
// answers, so a slow server cannot slow the test down and hide it).
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e PROFILE=local k6/load.js
//
// PROFILE sets the rates: ci (a few seconds), local (a two-core machine,
// about 4 minutes) or staging (a cluster, about 20 minutes).

import { mix, pick, seed, thresholds, summaryTrendStats } from './lib/mix.js';

const p = pick({
  ci: { rate: 100, ramp: '5s', hold: '10s', vus: 20, maxVUs: 100 },
  local: { rate: 1500, ramp: '1m', hold: '2m', vus: 100, maxVUs: 600 },
  staging: { rate: 8000, ramp: '3m', hold: '15m', vus: 400, maxVUs: 3000 },
});

export const options = {
  scenarios: {
    load: {
      executor: 'ramping-arrival-rate',
      startRate: Math.ceil(p.rate / 10),
      timeUnit: '1s',
      preAllocatedVUs: p.vus,
      maxVUs: p.maxVUs,
      stages: [
        { target: p.rate, duration: p.ramp },
        { target: p.rate, duration: p.hold },
        { target: 0, duration: '10s' },
      ],
    },
  },
  thresholds: thresholds({ p95: 50, p99: 200 }),
  summaryTrendStats,
};

export function setup() {
  return seed();
}

export default function (data) {
  mix(data);
}
