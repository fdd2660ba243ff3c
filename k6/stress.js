// Stress test: the mix at arrival rates that step past what the server is
// expected to sustain, to find where latency bends and errors begin, and to
// see that it degrades (slower, 503 with Retry-After) instead of falling
// over. The limits are looser than load.js: a stress run fails only when
// the server stops answering properly.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e PROFILE=local k6/stress.js

import { mix, pick, seed, thresholds, summaryTrendStats } from './lib/mix.js';

const p = pick({
  ci: { base: 100, step: '5s', vus: 20, maxVUs: 200 },
  local: { base: 1000, step: '45s', vus: 200, maxVUs: 1500 },
  staging: { base: 5000, step: '3m', vus: 500, maxVUs: 6000 },
});

export const options = {
  scenarios: {
    stress: {
      executor: 'ramping-arrival-rate',
      startRate: p.base,
      timeUnit: '1s',
      preAllocatedVUs: p.vus,
      maxVUs: p.maxVUs,
      // 1x, 2x, 3x, 4x the base rate, each held for a step, then recovery.
      stages: [1, 2, 3, 4].flatMap((m) => [
        { target: p.base * m, duration: '10s' },
        { target: p.base * m, duration: p.step },
      ]).concat([{ target: p.base, duration: '20s' }, { target: p.base, duration: p.step }]),
    },
  },
  thresholds: thresholds({ failed: 0.05, p95: 500, p99: 2000, checks: 0.95 }),
  summaryTrendStats,
};

export function setup() {
  return seed();
}

export default function (data) {
  mix(data);
}
