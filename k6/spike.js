// Spike test: a steady mix, then a sudden jump to ten times the rate for a
// short while, then back. It checks the server absorbs a burst (pools and
// queues, not errors) and that latency returns to normal afterwards.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e PROFILE=local k6/spike.js

import { mix, pick, seed, thresholds, summaryTrendStats } from './lib/mix.js';

const p = pick({
  ci: { rate: 50, calm: '5s', spike: '5s', vus: 20, maxVUs: 300 },
  local: { rate: 300, calm: '30s', spike: '20s', vus: 100, maxVUs: 2000 },
  staging: { rate: 1500, calm: '2m', spike: '1m', vus: 300, maxVUs: 8000 },
});

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: p.rate,
      timeUnit: '1s',
      preAllocatedVUs: p.vus,
      maxVUs: p.maxVUs,
      stages: [
        { target: p.rate, duration: p.calm },
        { target: p.rate * 10, duration: '2s' },
        { target: p.rate * 10, duration: p.spike },
        { target: p.rate, duration: '2s' },
        { target: p.rate, duration: p.calm },
      ],
    },
  },
  thresholds: thresholds({ failed: 0.02, p95: 300, p99: 1000, checks: 0.98 }),
  summaryTrendStats,
};

export function setup() {
  return seed();
}

export default function (data) {
  mix(data);
}
