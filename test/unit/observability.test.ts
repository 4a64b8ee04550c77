// The observability stack's promises, read from ops/ and docker-compose.yml (no Docker engine
// needed): Prometheus scrapes every process where compose puts its metrics listener, every alert
// is well formed, and every metric an alert or a dashboard panel asks for is one the service
// actually exports (taken from src/metrics.ts itself, so a renamed metric fails here).
import { posix } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createMetrics, registerQueueGauge, registerStockGauge } from '../../src/metrics.ts';
import { arrayAt, composeServices, isObject, objectAt, readJson, readYaml, repoFileExists as exists, stringAt, type Json, type JsonObject } from '../support/repo-files.ts';

const PROMETHEUS_CONFIG = 'ops/prometheus/prometheus.yml';
const ALERT_RULES = 'ops/prometheus/alerts.yml';
const GRAFANA_DATASOURCE = 'ops/grafana/provisioning/datasources/prometheus.yml';
const GRAFANA_DASHBOARD_PROVIDER = 'ops/grafana/provisioning/dashboards/dashboards.yml';
const DASHBOARDS_DIR = 'ops/grafana/dashboards';
const DASHBOARD = `${DASHBOARDS_DIR}/flashsale.json`;

// --- docker-compose.yml ---------------------------------------------------------------------

const { names: serviceNames, service, environment } = composeServices();

/** Bind mounts of a service as [host path relative to the repository, container path]. */
function bindMounts(name: string): [string, string][] {
  const volumes = service(name)['volumes'];
  if (volumes === undefined) return [];
  const mounts: [string, string][] = [];
  for (const [index, volume] of arrayAt(volumes, `services.${name}.volumes`).entries()) {
    let source: string;
    let target: string;
    if (typeof volume === 'string') {
      const [src = '', dst = ''] = volume.split(':');
      [source, target] = [src, dst];
    } else {
      const long = objectAt(volume, `services.${name}.volumes[${index}]`);
      if (long['type'] !== 'bind') continue;
      [source, target] = [stringAt(long['source'], 'source'), stringAt(long['target'], 'target')];
    }
    // Named volumes have no path; bind mounts start with ./ or / (only repository paths count).
    if (!source.startsWith('./')) continue;
    mounts.push([posix.normalize(source), posix.normalize(target)]);
  }
  return mounts;
}

/** The repository file a container path of the service reads, through its bind mounts. */
function hostPath(name: string, containerPath: string): string | undefined {
  const wanted = posix.normalize(containerPath);
  let best: [string, string] | undefined;
  for (const mount of bindMounts(name)) {
    const [, target] = mount;
    if ((wanted === target || wanted.startsWith(`${target}/`)) && (!best || target.length > best[1].length)) best = mount;
  }
  if (!best) return undefined;
  return posix.join(best[0], posix.relative(best[1], wanted));
}

function metricsPorts(): Record<string, string> {
  const ports: Record<string, string> = {};
  for (const name of serviceNames) {
    const port = environment(name)['METRICS_PORT'];
    if (port !== undefined) ports[name] = port;
  }
  return ports;
}

function flag(name: string, flagName: string, fallback: string): string {
  const command = service(name)['command'];
  const args = Array.isArray(command) ? command.map(String) : typeof command === 'string' ? command.split(/\s+/) : [];
  const prefix = `--${flagName}=`;
  return args.find((arg) => arg.startsWith(prefix))?.slice(prefix.length) ?? fallback;
}

// --- PromQL: the metric names an expression reads ---------------------------------------------

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'inf', 'nan']);

/**
 * The metric names an expression selects: identifiers that are not functions or aggregations
 * (followed by a parenthesis), not keywords, and not inside strings, label matchers, ranges or
 * grouping clauses. Grafana variables ($__rate_interval, $sale) are dropped.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ')
    .replace(/\boffset\s+-?\w+/gi, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const names = new Set<string>();
  // A token starting with a digit is a number or a duration, never a name.
  for (const match of stripped.matchAll(/\d[\w.]*|([a-zA-Z_:][\w:]*)/g)) {
    const name = match[1];
    if (name === undefined || PROMQL_KEYWORDS.has(name.toLowerCase())) continue;
    const after = stripped.slice((match.index ?? 0) + name.length).trimStart();
    if (after.startsWith('(')) continue;
    names.add(name);
  }
  return [...names];
}

/** Every series name the service exposes: its registry (histograms as _bucket/_sum/_count), plus Prometheus's `up`. */
async function exportedSeriesNames(): Promise<Set<string>> {
  const metrics = createMetrics();
  registerQueueGauge(metrics, async () => ({ waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0 }));
  registerStockGauge(metrics, async () => []);
  const names = new Set<string>(['up']);
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    const type = String(metric.type);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
    else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(metric.name + suffix);
    else names.add(metric.name);
  }
  return names;
}

let exported = new Set<string>();
beforeAll(async () => {
  exported = await exportedSeriesNames();
});

describe('metric name extraction (the checker the tests below rely on)', () => {
  it('when an expression aggregates, matches labels and uses Grafana variables, then only its metrics are named', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (route, le) (rate(http_request_duration_seconds_bucket{route!~"/health/.*", sale=~"$sale"}[$__rate_interval]))) ' +
          '/ on (route) group_left sum(rate(flashsale_reservations_total[5m] offset 1h)) > 1e3 and up == 0',
      ).sort(),
    ).toEqual(['flashsale_reservations_total', 'http_request_duration_seconds_bucket', 'up']);
    expect(metricNames('max by (job, instance) (nodejs_eventloop_lag_p99_seconds) > 0.25')).toEqual(['nodejs_eventloop_lag_p99_seconds']);
  });

  it('when the registry is read, then it holds the service metrics, histogram series and default Node metrics', () => {
    for (const name of [
      'http_request_duration_seconds_bucket',
      'http_request_duration_seconds_count',
      'flashsale_reservations_total',
      'flashsale_queue_jobs',
      'flashsale_order_persist_lag_seconds_bucket',
      'nodejs_eventloop_lag_p99_seconds',
      'process_resident_memory_bytes',
    ]) {
      expect(exported).toContain(name);
    }
    expect(exported).not.toContain('http_request_duration_seconds');
  });
});

// --- Prometheus -------------------------------------------------------------------------------

const prometheusConfig = readYaml(PROMETHEUS_CONFIG);
const scrapeConfigs = arrayAt(prometheusConfig['scrape_configs'], 'scrape_configs').map((job, i) => objectAt(job, `scrape_configs[${i}]`));

function targetsOf(job: JsonObject): string[] {
  const staticConfigs = job['static_configs'] === undefined ? [] : arrayAt(job['static_configs'], 'static_configs');
  return staticConfigs.flatMap((config, i) =>
    arrayAt(objectAt(config, `static_configs[${i}]`)['targets'], 'targets').map((target) => stringAt(target, 'target')),
  );
}

interface AlertRule {
  alert: string;
  expr: string;
  for: string;
  severity: string;
  summary: string;
  description: string;
}

const alertRules: AlertRule[] = arrayAt(readYaml(ALERT_RULES)['groups'], 'groups').flatMap((group, g) => {
  const rules = arrayAt(objectAt(group, `groups[${g}]`)['rules'], `groups[${g}].rules`);
  return rules.map((value, r): AlertRule => {
    const rule = objectAt(value, `groups[${g}].rules[${r}]`);
    const at = `groups[${g}].rules[${r}]`;
    const labels = objectAt(rule['labels'], `${at}.labels`);
    const annotations = objectAt(rule['annotations'], `${at}.annotations`);
    return {
      alert: stringAt(rule['alert'], `${at}.alert`),
      expr: stringAt(rule['expr'], `${at}.expr`),
      for: stringAt(rule['for'], `${at}.for`),
      severity: stringAt(labels['severity'], `${at}.labels.severity`),
      summary: stringAt(annotations['summary'], `${at}.annotations.summary`),
      description: stringAt(annotations['description'], `${at}.annotations.description`),
    };
  });
});

describe('Prometheus (ops/prometheus)', () => {
  it('when compose runs Prometheus, then it reads this config through its mount and publishes 9090', () => {
    const prometheus = service('prometheus');
    expect(String(prometheus['image'])).toMatch(/^prom\/prometheus(:|$)/);
    expect(prometheus['ports']).toContain('9090:9090');
    expect(hostPath('prometheus', flag('prometheus', 'config.file', '/etc/prometheus/prometheus.yml'))).toBe(PROMETHEUS_CONFIG);
  });

  it('when it scrapes, then every process with a METRICS_PORT in compose is a target on that port, every 5 s', () => {
    const ports = metricsPorts();
    expect(ports).toEqual({ api: '9464', worker: '9465' });
    const global = objectAt(prometheusConfig['global'], 'global');
    const targets = new Map<string, string>();
    for (const job of scrapeConfigs) {
      const interval = String(job['scrape_interval'] ?? global['scrape_interval']);
      for (const target of targetsOf(job)) targets.set(target, interval);
    }
    for (const [name, port] of Object.entries(ports)) {
      expect(targets.get(`${name}:${port}`), `${name}:${port}`).toBe('5s');
    }
  });

  it('when it scrapes, then every target is a compose service (or Prometheus itself) and job names are unique', () => {
    const jobNames = scrapeConfigs.map((job) => stringAt(job['job_name'], 'job_name'));
    expect(new Set(jobNames).size).toBe(jobNames.length);
    for (const target of scrapeConfigs.flatMap(targetsOf)) {
      const host = target.split(':')[0] ?? '';
      expect(host === 'localhost' || serviceNames.includes(host), target).toBe(true);
    }
  });

  it('when it loads rules, then rule_files name exactly the alert rules file', () => {
    const configPath = flag('prometheus', 'config.file', '/etc/prometheus/prometheus.yml');
    const ruleFiles = arrayAt(prometheusConfig['rule_files'], 'rule_files').map((file) => {
      const containerPath = posix.resolve(posix.dirname(configPath), stringAt(file, 'rule_files[]'));
      return hostPath('prometheus', containerPath);
    });
    expect(ruleFiles).toEqual([ALERT_RULES]);
  });
});

describe('alert rules (ops/prometheus/alerts.yml)', () => {
  it('when read, then every alert is uniquely named and has expr, for, severity, summary and description', () => {
    expect(alertRules.length).toBeGreaterThanOrEqual(7);
    expect(new Set(alertRules.map((rule) => rule.alert)).size).toBe(alertRules.length);
    for (const rule of alertRules) {
      expect(rule.for, rule.alert).toMatch(/^(\d+(ms|s|m|h|d))+$/);
      expect(['critical', 'warning'], rule.alert).toContain(rule.severity);
    }
  });

  it('when evaluated, then every metric an alert reads is one the service (or Prometheus) exports', () => {
    for (const rule of alertRules) {
      const names = metricNames(rule.expr);
      expect(names.length, rule.alert).toBeGreaterThan(0);
      for (const name of names) expect(exported, `${rule.alert}: ${name}`).toContain(name);
    }
  });

  it('when the service misbehaves, then an alert covers each failure the SREs watch for', () => {
    const find = (what: string, match: (rule: AlertRule) => boolean): AlertRule => {
      const rule = alertRules.find(match);
      if (!rule) throw new Error(`no alert for ${what}`);
      return rule;
    };
    const lag = find('persist lag', (r) => /histogram_quantile\(0\.99,.*flashsale_order_persist_lag_seconds_bucket/.test(r.expr));
    expect(lag.expr).toMatch(/>\s*5\b/);
    expect(lag.for).toBe('1m');
    find('failed jobs', (r) => /flashsale_queue_jobs\{state="failed"\}\)?\s*>\s*0/.test(r.expr));
    find('guard refusals', (r) => /increase\(flashsale_orders_rejected_oversell_total\[5m\]\)\)?\s*>\s*0/.test(r.expr));
    find('5xx ratio', (r) => /http_request_duration_seconds_count\{status_code=~"5\.\."\}/.test(r.expr) && r.expr.includes('/'));
    find('negative stock', (r) => /flashsale_stock_available\)?\s*<\s*0/.test(r.expr));
    find('Postgres trailing', (r) => r.expr.includes('flashsale_queue_jobs{state="waiting"}') && r.for === '2m');
    find('event-loop lag', (r) => r.expr.includes('nodejs_eventloop_lag_p99_seconds'));
    find('target down', (r) => /^up(\{[^}]*\})?\s*==\s*0$/.test(r.expr.trim()));
  });
});

// --- Grafana ----------------------------------------------------------------------------------

interface Panel {
  id: number;
  type: string;
  title: string;
  datasourceUid: string | undefined;
  gridPos: { x: number; y: number; w: number; h: number };
  targets: { expr: string; datasourceUid: string | undefined }[];
}

function uidOf(value: Json | undefined): string | undefined {
  return isObject(value) && typeof value['uid'] === 'string' ? value['uid'] : undefined;
}

function panelsOf(list: Json[], path: string): Panel[] {
  return list.flatMap((value, i) => {
    const panel = objectAt(value, `${path}[${i}]`);
    const at = `${path}[${i}]`;
    const grid = objectAt(panel['gridPos'], `${at}.gridPos`);
    const targets = panel['targets'] === undefined ? [] : arrayAt(panel['targets'], `${at}.targets`);
    const own: Panel = {
      id: Number(panel['id']),
      type: stringAt(panel['type'], `${at}.type`),
      title: stringAt(panel['title'], `${at}.title`),
      datasourceUid: uidOf(panel['datasource']),
      gridPos: { x: Number(grid['x']), y: Number(grid['y']), w: Number(grid['w']), h: Number(grid['h']) },
      targets: targets.map((target, t) => {
        const object = objectAt(target, `${at}.targets[${t}]`);
        return { expr: stringAt(object['expr'], `${at}.targets[${t}].expr`), datasourceUid: uidOf(object['datasource']) };
      }),
    };
    // Collapsed rows carry their panels inside them.
    const nested = panel['panels'] === undefined ? [] : panelsOf(arrayAt(panel['panels'], `${at}.panels`), `${at}.panels`);
    return [own, ...nested];
  });
}

const datasources = arrayAt(readYaml(GRAFANA_DATASOURCE)['datasources'], 'datasources').map((d, i) => objectAt(d, `datasources[${i}]`));
const providers = arrayAt(readYaml(GRAFANA_DASHBOARD_PROVIDER)['providers'], 'providers').map((p, i) => objectAt(p, `providers[${i}]`));
const dashboard = readJson(DASHBOARD);
const panels = panelsOf(arrayAt(dashboard['panels'], 'panels'), 'panels');
const graphPanels = panels.filter((panel) => panel.type !== 'row');

// Title → a metric its queries must read.
const REQUIRED_PANELS: Record<string, string> = {
  'Request rate by route': 'http_request_duration_seconds_count',
  'Error rate by route (5xx)': 'http_request_duration_seconds_count',
  'Latency p50 / p99 by route': 'http_request_duration_seconds_bucket',
  'Reservations by result': 'flashsale_reservations_total',
  'Stock available per SKU': 'flashsale_stock_available',
  'Queue depth by state': 'flashsale_queue_jobs',
  'Persist lag (201 → row committed)': 'flashsale_order_persist_lag_seconds_bucket',
  'Orders persisted rate': 'flashsale_orders_persisted_total',
  'Event-loop lag p99': 'nodejs_eventloop_lag_p99_seconds',
  'Shed and rate-limited requests (503 / 429)': 'http_request_duration_seconds_count',
  'Delisted items by reason': 'flashsale_items_delisted_total',
  'Released units': 'flashsale_units_released_total',
  'Payments by result': 'flashsale_payment_attempts_total',
};

describe('Grafana provisioning (ops/grafana/provisioning)', () => {
  it('when compose runs Grafana, then it mounts the provisioning and dashboards folders and publishes 3001', () => {
    const grafana = service('grafana');
    expect(String(grafana['image'])).toMatch(/^grafana\/grafana(-oss)?(:|$)/);
    expect(grafana['ports']).toContain('3001:3000');
    expect(hostPath('grafana', '/etc/grafana/provisioning/datasources/prometheus.yml')).toBe(GRAFANA_DATASOURCE);
    expect(hostPath('grafana', '/etc/grafana/provisioning/dashboards/dashboards.yml')).toBe(GRAFANA_DASHBOARD_PROVIDER);
  });

  it('when Grafana asks for a login, then viewers may be anonymous and the admin password comes from the operator', () => {
    const env = environment('grafana');
    const anonymous = env['GF_AUTH_ANONYMOUS_ENABLED'] === 'true';
    if (anonymous) expect(env['GF_AUTH_ANONYMOUS_ORG_ROLE']).toBe('Viewer');
    const password = env['GF_SECURITY_ADMIN_PASSWORD'];
    expect(anonymous || password !== undefined).toBe(true);
    // Never a literal (or a literal default) in the file.
    if (password !== undefined) expect(password).toMatch(/^\$\{\w+:\?.+\}$/);
    const home = env['GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH'];
    if (home !== undefined) expect(hostPath('grafana', home)).toBe(DASHBOARD);
  });

  it('when the datasource is provisioned, then it is the compose Prometheus, named Prometheus, with uid prometheus', () => {
    expect(datasources).toHaveLength(1);
    const [datasource] = datasources;
    expect(datasource).toMatchObject({ name: 'Prometheus', type: 'prometheus', uid: 'prometheus', url: 'http://prometheus:9090' });
    expect(serviceNames).toContain('prometheus');
  });

  it('when dashboards are provisioned, then the file provider reads the folder compose mounts from ops/grafana/dashboards', () => {
    expect(providers.length).toBeGreaterThan(0);
    for (const provider of providers) {
      expect(provider['type']).toBe('file');
      const path = stringAt(objectAt(provider['options'], 'options')['path'], 'options.path');
      expect(hostPath('grafana', path)).toBe(DASHBOARDS_DIR);
    }
    expect(exists(DASHBOARD)).toBe(true);
  });
});

describe('dashboard (ops/grafana/dashboards/flashsale.json)', () => {
  const datasourceUid = String(datasources[0]?.['uid']);

  it('when loaded, then it is the flashsale dashboard in a current schema', () => {
    expect(dashboard['uid']).toBe('flashsale');
    expect(Number(dashboard['schemaVersion'])).toBeGreaterThanOrEqual(36);
    expect(dashboard['id']).toBeNull();
  });

  it('when rendered, then it has every required panel, each reading the metric it is about', () => {
    for (const [title, metric] of Object.entries(REQUIRED_PANELS)) {
      const panel = graphPanels.find((candidate) => candidate.title === title);
      expect(panel, title).toBeDefined();
      expect(panel?.targets.flatMap((target) => metricNames(target.expr)), title).toContain(metric);
    }
  });

  it('when rendered, then every panel has a unique id and panels do not overlap on the 24-column grid', () => {
    const ids = panels.map((panel) => panel.id);
    for (const id of ids) expect(Number.isInteger(id) && id > 0).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const [i, a] of panels.entries()) {
      expect(a.gridPos.x + a.gridPos.w, a.title).toBeLessThanOrEqual(24);
      for (const b of panels.slice(i + 1)) {
        const overlap =
          a.gridPos.x < b.gridPos.x + b.gridPos.w &&
          b.gridPos.x < a.gridPos.x + a.gridPos.w &&
          a.gridPos.y < b.gridPos.y + b.gridPos.h &&
          b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap, `${a.title} / ${b.title}`).toBe(false);
      }
    }
  });

  it('when queried, then every panel and target uses the provisioned datasource uid', () => {
    expect(datasourceUid).toBe('prometheus');
    for (const panel of graphPanels) {
      expect(panel.targets.length, panel.title).toBeGreaterThan(0);
      if (panel.datasourceUid !== undefined) expect(panel.datasourceUid, panel.title).toBe(datasourceUid);
      for (const target of panel.targets) expect(target.datasourceUid, panel.title).toBe(datasourceUid);
    }
  });

  it('when queried, then every metric a panel or variable reads is one the service exports', () => {
    for (const panel of graphPanels) {
      for (const target of panel.targets) {
        const names = metricNames(target.expr);
        expect(names.length, `${panel.title}: ${target.expr}`).toBeGreaterThan(0);
        for (const name of names) expect(exported, `${panel.title}: ${name}`).toContain(name);
      }
    }
    const templating = dashboard['templating'] === undefined ? [] : arrayAt(objectAt(dashboard['templating'], 'templating')['list'], 'templating.list');
    for (const [i, value] of templating.entries()) {
      const variable = objectAt(value, `templating.list[${i}]`);
      if (variable['type'] !== 'query') continue;
      expect(uidOf(variable['datasource'])).toBe(datasourceUid);
      const query = isObject(variable['query']) ? String(variable['query']['query']) : String(variable['query']);
      const labelValues = /^label_values\(\s*(.+?)\s*,\s*\w+\s*\)$/.exec(query.trim());
      const expr = labelValues ? labelValues[1] ?? '' : query;
      for (const name of metricNames(expr)) expect(exported, `variable ${String(variable['name'])}: ${name}`).toContain(name);
    }
  });
});
