// Shared pieces of api-perf's k6 scripts: the target, load profiles, seeding,
// the realistic request mix and thresholds.
//
// Environment:
//   BASE_URL  the server, default http://127.0.0.1:8080
//   PROFILE   how hard to push: ci, local (default) or staging; each script
//             maps it to its own rates and durations
//   API_KEY   sent as "Authorization: Bearer <key>" when the server has API_KEYS
//   SEED      products to create in setup(), default 100
//
// The mix is 80% product reads (90% of them on a hot set of 10% of the
// products), 10% list pages, 8% order creates and 2% product updates (JSON
// merge patch). Every request carries a `name` tag with the route template,
// so results and thresholds group by route, not by URL.
//
// Run against a server whose rate limiter is off or sized for the test
// (RATE_LIMIT_READ=off RATE_LIMIT_WRITE=off): every virtual user comes from
// one IP, and a 429 counts as a failed request here. ratelimit.js tests the
// limiter itself.

import http from 'k6/http';
import { check, fail } from 'k6';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const PROFILE = (__ENV.PROFILE || 'local').toLowerCase();

// Route templates, used as the `name` tag.
export const ROUTES = {
  getProduct: 'GET /products/{id}',
  listProducts: 'GET /products',
  createOrder: 'POST /orders',
  patchProduct: 'PATCH /products/{id}',
  createProduct: 'POST /products',
};

// Stock of the seeded products: far more than any run sells, so an order
// never meets 409 for lack of stock.
export const SEED_STOCK = 1000000000;

export function headers(contentType) {
  const h = { Accept: 'application/json' };
  if (contentType) {
    h['Content-Type'] = contentType;
  }
  if (__ENV.API_KEY) {
    h.Authorization = `Bearer ${__ENV.API_KEY}`;
  }
  return h;
}

// pick returns the profile's entry of a { ci, local, staging } table and
// stops the run on an unknown profile rather than guessing.
export function pick(table) {
  if (!(PROFILE in table)) {
    fail(`PROFILE=${PROFILE} is not one of ${Object.keys(table).join(', ')}`);
  }
  return table[PROFILE];
}

// seed creates products in batches of 20 and returns their ids with the
// hot set (the first tenth, at least one). It fails the run when the
// server refuses, so a misconfigured target stops at once.
export function seed(count) {
  const n = count || parseInt(__ENV.SEED || '100', 10);
  const ids = [];
  for (let start = 0; start < n; start += 20) {
    const reqs = [];
    for (let i = start; i < Math.min(n, start + 20); i++) {
      reqs.push({
        method: 'POST',
        url: `${BASE_URL}/products`,
        // The price is written out with two decimals: a float sum such
        // as 9.99 + 3 would serialise with more, which the API refuses.
        body: `{"name":"k6 product ${i}","description":"created by the k6 setup",` +
          `"price":${(9.99 + (i % 90)).toFixed(2)},"stock":${SEED_STOCK}}`,
        params: { headers: headers('application/json'), tags: { name: ROUTES.createProduct } },
      });
    }
    for (const res of http.batch(reqs)) {
      if (res.status !== 201) {
        fail(`setup: POST /products answered ${res.status}: ${res.body}`);
      }
      ids.push(res.json('id'));
    }
  }
  return { ids, hot: ids.slice(0, Math.max(1, Math.floor(ids.length / 10))) };
}

// report logs the first few unexpected responses of each virtual user, so
// a failed check comes with the server's own explanation.
let reported = 0;
export function report(res, expected) {
  if (!expected.includes(res.status) && reported < 5) {
    reported++;
    console.warn(`${res.request.method} ${res.url} answered ${res.status}: ${String(res.body).slice(0, 300)}`);
  }
}

function any(list) {
  return list[Math.floor(Math.random() * list.length)];
}

// productID draws from the hot set 90% of the time.
function productID(data) {
  return Math.random() < 0.9 ? any(data.hot) : any(data.ids);
}

// Conditional GETs revalidate with the ETag a virtual user saw last for
// an id, as a browser or CDN would; about a third of reads do.
const etags = {};

export function getProduct(data) {
  const id = productID(data);
  const h = headers();
  if (etags[id] && Math.random() < 0.33) {
    h['If-None-Match'] = etags[id];
  }
  const res = http.get(`${BASE_URL}/products/${id}`, {
    headers: h,
    tags: { name: ROUTES.getProduct },
    responseCallback: http.expectedStatuses(200, 304),
  });
  report(res, [200, 304]);
  check(res, {
    'product: 200 or 304': (r) => r.status === 200 || r.status === 304,
    'product: has ETag': (r) => !!r.headers.Etag,
    'product: body has the id': (r) => r.status === 304 || r.json('id') === id,
  });
  if (res.headers.Etag) {
    etags[id] = res.headers.Etag;
  }
  return res;
}

export function listProducts() {
  const res = http.get(`${BASE_URL}/products?limit=20`, { headers: headers(), tags: { name: ROUTES.listProducts } });
  report(res, [200]);
  check(res, {
    'list: 200': (r) => r.status === 200,
    'list: has items': (r) => r.status === 200 && Array.isArray(r.json('items')),
  });
  // Half the time, follow the cursor like a client paging through.
  const cursor = res.status === 200 ? res.json('next_cursor') : null;
  if (cursor && Math.random() < 0.5) {
    const next = http.get(`${BASE_URL}/products?limit=20&cursor=${encodeURIComponent(cursor)}`, {
      headers: headers(),
      tags: { name: ROUTES.listProducts },
    });
    check(next, { 'list: next page 200': (r) => r.status === 200 });
  }
  return res;
}

export function createOrder(data) {
  const res = http.post(
    `${BASE_URL}/orders`,
    JSON.stringify({ product_id: any(data.ids), quantity: 1 + Math.floor(Math.random() * 3) }),
    { headers: headers('application/json'), tags: { name: ROUTES.createOrder } },
  );
  report(res, [201]);
  check(res, {
    'order: 201': (r) => r.status === 201,
    'order: has Location': (r) => r.status !== 201 || /\/orders\/\d+$/.test(r.headers.Location || ''),
  });
  return res;
}

export function patchProduct(data) {
  const id = any(data.ids);
  const price = (5 + Math.random() * 95).toFixed(2);
  const res = http.patch(`${BASE_URL}/products/${id}`, `{"price":${price}}`, {
    headers: headers('application/merge-patch+json'),
    tags: { name: ROUTES.patchProduct },
  });
  report(res, [200]);
  check(res, {
    'patch: 200': (r) => r.status === 200,
    'patch: price applied': (r) => r.status === 200 && r.json('price').toFixed(2) === price,
  });
  return res;
}

// mix sends one request of the realistic mix.
export function mix(data) {
  const r = Math.random();
  if (r < 0.8) {
    return getProduct(data);
  }
  if (r < 0.9) {
    return listProducts();
  }
  if (r < 0.98) {
    return createOrder(data);
  }
  return patchProduct(data);
}

// thresholds fail the run (k6 exits non-zero) when the error rate or the
// latency percentiles go past the limits, overall and per route.
export function thresholds({ failed = 0.01, p95 = 200, p99 = 500, checks = 0.99 } = {}) {
  const t = {
    http_req_failed: [`rate<${failed}`],
    http_req_duration: [`p(95)<${p95}`, `p(99)<${p99}`],
    checks: [`rate>${checks}`],
  };
  for (const name of [ROUTES.getProduct, ROUTES.listProducts, ROUTES.createOrder, ROUTES.patchProduct]) {
    t[`http_req_duration{name:${name}}`] = [`p(95)<${p95}`, `p(99)<${p99}`];
    t[`http_req_failed{name:${name}}`] = [`rate<${failed}`];
  }
  return t;
}

// summaryTrendStats adds p(99) to k6's end-of-test summary.
export const summaryTrendStats = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'];
