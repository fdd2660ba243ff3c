// Flash sale: a ramp of orders onto one product until its stock runs out.
// Every order that got a 201 must be a unit sold: at the end the product's
// stock is 0, its orders add up to the stock it started with, and the
// number of 201s equals that stock; every other answer is 409 (sold out)
// or, while the order lane's queue is full, 503 with Retry-After. This is
// the load that order batching (docs/batching.md) exists for.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e PROFILE=local k6/flashsale.js
//
// Run against a server whose write rate limit is off (RATE_LIMIT_WRITE=off):
// every virtual user comes from one IP.

import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { BASE_URL, pick, headers, summaryTrendStats } from './lib/mix.js';

const p = pick({
  ci: { stock: 300, peak: 400, ramp: '5s', vus: 50, maxVUs: 300 },
  local: { stock: 5000, peak: 3000, ramp: '20s', vus: 200, maxVUs: 2000 },
  staging: { stock: 50000, peak: 20000, ramp: '1m', vus: 1000, maxVUs: 10000 },
});

const created = new Counter('flashsale_created');
const soldOut = new Counter('flashsale_sold_out');
const unexpected = new Counter('flashsale_unexpected');

export const options = {
  scenarios: {
    sale: {
      executor: 'ramping-arrival-rate',
      startRate: Math.max(1, Math.floor(p.peak / 20)),
      timeUnit: '1s',
      preAllocatedVUs: p.vus,
      maxVUs: p.maxVUs,
      stages: [
        { target: p.peak, duration: p.ramp },
        { target: p.peak, duration: p.ramp },
      ],
    },
  },
  thresholds: {
    // Exactly the stock is sold: no oversell, and no unit left unsold
    // while orders were still coming (the ramp outlasts the stock).
    flashsale_created: [`count==${p.stock}`],
    flashsale_unexpected: ['count==0'],
    checks: ['rate==1'],
  },
  summaryTrendStats,
};

export function setup() {
  const res = http.post(`${BASE_URL}/products`, JSON.stringify({ name: 'flash sale', price: 9.99, stock: p.stock }), {
    headers: headers('application/json'),
  });
  check(res, { 'setup: product created': (r) => r.status === 201 });
  return { id: res.json('id') };
}

export default function (data) {
  const res = http.post(`${BASE_URL}/orders`, JSON.stringify({ product_id: data.id, quantity: 1 }), {
    headers: headers('application/json'),
    tags: { name: 'POST /orders' },
    responseCallback: http.expectedStatuses(201, 409, 503),
  });
  if (res.status === 201) {
    created.add(1);
  } else if (res.status === 409) {
    soldOut.add(1);
  } else if (res.status !== 503 || !res.headers['Retry-After']) {
    unexpected.add(1);
  }
}

// teardown checks the database's side: the stock is gone, and the orders
// of the product add up to exactly the stock sold.
export function teardown(data) {
  const product = http.get(`${BASE_URL}/products/${data.id}`, { headers: headers() });
  check(product, { 'teardown: stock is 0': (r) => r.status === 200 && Number(r.json('stock')) === 0 });
  let units = 0;
  let cursor = '';
  for (;;) {
    const page = http.get(`${BASE_URL}/orders?product_id=${data.id}&limit=100${cursor ? `&cursor=${cursor}` : ''}`, {
      headers: headers(),
    });
    if (page.status !== 200) {
      check(page, { 'teardown: orders listed': () => false });
      return;
    }
    for (const o of page.json('items')) {
      units += Number(o.quantity);
    }
    cursor = page.json('next_cursor');
    if (!cursor) {
      break;
    }
    cursor = encodeURIComponent(cursor);
  }
  check(units, { 'teardown: orders add up to the stock': (u) => u === p.stock });
}
