// Browser end-to-end tests of the dashboard against `millwright serve
// --demo` (started by run.sh, which sets MW_URL, MW_USER, MW_PASSWORD).
// One browser page walks through the pages in order; each test leaves a
// screenshot in ARTIFACTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const URL = process.env.MW_URL;
const USER = process.env.MW_USER || 'demo';
const PASSWORD = process.env.MW_PASSWORD;
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const DEVICE = 'demo-0001';
assert.ok(URL && PASSWORD, 'MW_URL and MW_PASSWORD must be set (run.sh does)');
mkdirSync(ARTIFACTS, { recursive: true });

let browser;
let page;
let token;
const problems = [];

const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

// Polls fn until it answers something truthy, or fails naming what.
async function until(what, fn, timeoutMs = 30000, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try { last = await fn(); } catch (e) { last = e; }
    if (last && !(last instanceof Error)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function api(method, path, body) {
  const r = await fetch(URL + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

before(async () => {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  // For working on the dashboard without rebuilding the binary: serve the
  // assets from this directory instead (e.g. crates/api/assets).
  if (process.env.DASHBOARD_ASSETS) {
    await page.route('**/assets/*', (r) => r.fulfill({ path: join(process.env.DASHBOARD_ASSETS, new globalThis.URL(r.request().url()).pathname.split('/').pop()) }));
  }
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // Refused requests (a wrong password, a conflict) are logged by the
  // browser as failed loads: expected; any other error is not.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console error: ${m.text()}`);
  });
});

after(async () => {
  await browser?.close();
});

test('the assets are served with their types', async () => {
  for (const [path, type] of [['/', 'text/html'], ['/assets/app.js', 'text/javascript'], ['/assets/app.css', 'text/css']]) {
    const r = await fetch(URL + path);
    assert.equal(r.status, 200, path);
    assert.ok(r.headers.get('content-type').startsWith(type), `${path}: ${r.headers.get('content-type')}`);
    assert.ok(r.headers.get('cache-control'), `${path} has Cache-Control`);
  }
});

test('log in', async () => {
  await page.goto(URL + '/');
  await page.waitForSelector('#username');
  await page.fill('#username', USER);
  await page.fill('#password', 'wrong');
  await page.click('button[type=submit]');
  await page.waitForSelector('.problem');
  await shot('01-login');
  await page.fill('#password', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForSelector('#count-online');
  token = await page.evaluate(() => sessionStorage.getItem('mw.token'));
  assert.match(token, /^mws_/);
});

test('the fleet page shows simulated devices online', async () => {
  const online = await until('devices online', async () => {
    const n = Number((await page.textContent('#count-online')).replace(/\D/g, ''));
    return n > 0 && n;
  });
  assert.ok(online > 0);
  await page.waitForSelector('#points-per-second');

  await shot('02-fleet');
});

test('the device list finds devices by prefix', async () => {
  await page.goto(URL + '/#/devices');
  await page.fill('#f-prefix', 'demo-000');
  await page.press('#f-prefix', 'Enter');
  // The unfiltered list may still be on screen (it holds the same link):
  // wait for the filtered answer itself, then count.
  await page.waitForFunction(() => location.hash.includes('prefix=demo-000'));
  await page.waitForSelector(`a[href="#/device/${DEVICE}"]`);
  await page
    .waitForFunction(() => document.querySelectorAll('tbody tr').length === 9, null, { timeout: 10000 })
    .catch(() => {});
  const rows = await page.$$eval('tbody tr', (r) => r.length);
  assert.equal(rows, 9, 'demo-0001 to demo-0009');
  await page.setViewportSize({ width: 768, height: 1024 });
  await shot('03-devices-tablet');
  await page.setViewportSize({ width: 1280, height: 800 });
  await shot('03-devices');
});

test("a device page's chart gets new points", async () => {
  await page.click(`a[href="#/device/${DEVICE}"]`);
  await page.waitForSelector('#chart-line');
  const count = async () => Number(await page.getAttribute('#chart-line', 'data-points'));
  const first = await count();
  const firstPath = await page.getAttribute('#chart-line', 'd');
  // 10 s buckets over 15 minutes, redrawn every 5 s; the machines report
  // every ~5 s: a new bucket within ~15 s.
  await until('a new point on the chart', async () => (await count()) > first, 40000, 500);
  assert.notEqual(await page.getAttribute('#chart-line', 'd'), firstPath);
  await page.waitForSelector('#latest table');
  await page.waitForSelector('#presence-state');
  assert.equal(await page.textContent('#presence-state'), 'online');
  await shot('04-device');
});

test('a desired value set in the twin editor is reported back by the device', async () => {
  await page.fill('#desired', '{"speed": 900}');
  await page.click('#apply-desired');
  await page.waitForSelector('#twin-ok');
  await until('reported.speed == 900', async () => {
    const doc = JSON.parse(await page.textContent('#twin-doc'));
    return doc.state.reported.speed === 900;
  }, 30000, 500);
  // A stale version is refused with 409 and shown.
  await page.fill('#desired', '{"speed": 950}');
  await page.evaluate(() => { document.querySelector('#twin-version').value = '1'; });
  await page.click('#apply-desired');
  const problem = await page.waitForSelector('.twin-form + div .problem');
  assert.match(await problem.textContent(), /409 conflict/);
  await shot('05-twin');
});

test('a command is sent and its status trail ends in succeeded', async () => {
  await page.fill('#cmd-method', 'ping');
  await page.click('#send-command');
  await until('the command to succeed', async () => (await page.textContent('#command-status').catch(() => '')) === 'succeeded', 30000, 500);
  const trail = await page.textContent('.trail');
  assert.match(trail, /queued/);
  assert.match(trail, /succeeded/);
  await shot('06-command');
});

test('an alarm is acknowledged', async () => {
  const rule = {
    name: 'browser-test-alarm',
    sql: `SELECT temp FROM 'devices/${DEVICE}/telemetry' WHERE temp > -1000`,
    actions: [{ type: 'alarm', alarm_type: 'browser-test', severity: 'major' }],
  };
  const created = await api('POST', '/api/rules', rule);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const alarm = await until('the alarm to be raised', async () => {
    const r = await api('GET', `/api/alarms?device=${DEVICE}&type=browser-test&state=active`);
    return r.body.items[0];
  }, 30000, 500);
  await page.goto(URL + `/#/alarms?state=active&severity=major&device=${DEVICE}`);
  const button = await page.waitForSelector(`tr[data-alarm="${alarm.id}"] button.ack`);
  await shot('07-alarms-before');
  await button.click();
  await until('the row to show active_ack', async () =>
    (await page.textContent(`tr[data-alarm="${alarm.id}"] .alarm-state`)).startsWith('active_ack'), 10000);
  const r = await api('GET', `/api/alarms/${alarm.id}`);
  assert.equal(r.body.state, 'active_ack');
  assert.equal(r.body.acknowledged_by, USER);
  await shot('07-alarms');
  await api('POST', '/api/rules/browser-test-alarm/disable');
});

test('the rules page lists rules with their counters', async () => {
  await page.goto(URL + '/#/rules');
  await page.waitForSelector('a[href="#/rules/edit/demo-overheat"]');
  await shot('08-rules');
});

test('a bad rule shows its parse error in place', async () => {
  await page.goto(URL + '/#/rules/new');
  await page.waitForSelector('#rule-sql');
  await page.fill('#rule-name', 'bad-rule');
  await page.fill('#rule-sql', "SELECT temp\nFROM 'devices/+/telemetry'\nWHERE temp >> 5");
  await page.click('#rule-validate');
  const err = await page.waitForSelector('#sql-error');
  assert.match(await err.textContent(), /line 3, column \d+/);
  assert.equal(await page.getAttribute('.sqlview .bad', 'data-line'), '3');
  assert.equal(await page.getAttribute('#rule-sql', 'aria-invalid'), 'true');
  await shot('09-rule-error');
  // Dry run of a good one.
  await page.fill('#rule-sql', "SELECT temp FROM 'devices/+/telemetry' WHERE temp > 85");
  await page.click('#dry-run button[type=submit]');
  await until('a dry-run result', async () => /"matched": true/.test(await page.textContent('#dry-result')), 10000);
  assert.equal(await page.$('#sql-error'), null, 'the error is gone once the rule parses');
  await shot('09-rule-dry-run');
  await page.goto(URL + '/#/rules/edit/demo-overheat');
  await page.waitForSelector('#traces table, #traces p');
  await shot('10-rule-traces');
});

test('the system page shows store figures and the version', async () => {
  await page.goto(URL + '/#/system');
  await page.waitForSelector('#tsdb-stats table');
  await page.waitForSelector('#broker-figures table');
  assert.match(await page.textContent('#broker-figures'), /connections/);
  assert.match(await page.textContent('#version'), /Millwright \d+\.\d+/);
  await shot('11-system');
});

test('keyboard: the main navigation is reachable with Tab', async () => {
  await page.goto(URL + '/#/fleet');
  await page.waitForSelector('#count-online');
  // Each page moves focus to <main>; the navigation is just before it,
  // past the log-out button.
  await page.keyboard.press('Shift+Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'logout');
  await page.keyboard.press('Shift+Tab');
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('href')), '#/system');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#tsdb-stats');
  assert.deepEqual(problems, [], 'no script errors on any page');
});
