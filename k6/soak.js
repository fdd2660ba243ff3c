// Soak test: the mix at a moderate constant rate for a long time, to catch
// what only time shows: leaks (memory, goroutines, connections), a growing
// p99, caches or tables that grow without bound. Watch the server's
// /metrics (go_goroutines, process_resident_memory_bytes, the pool gauges)
// while it runs.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e PROFILE=local k6/soak.js

import { mix, pick, seed, thresholds, summaryTrendStats } from './lib/mix.js';

const p = pick({
  ci: { rate: 50, duration: '30s', vus: 20, maxVUs: 100 },
  local: { rate: 500, duration: '30m', vus: 50, maxVUs: 400 },
  staging: { rate: 3000, duration: '4h', vus: 200, maxVUs: 2000 },
});

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: p.rate,
      timeUnit: '1s',
      duration: p.duration,
      preAllocatedVUs: p.vus,
      maxVUs: p.maxVUs,
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
