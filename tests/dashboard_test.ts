/**
 * deploy/grafana_dashboard.json stays in step with /metrics: every PromQL expression parses (promtool
 * check rules is the oracle) and every metric it names is exported by a sensor's /metrics.
 */
import assert from "node:assert/strict";
import { createApp } from "../src/server/app.ts";
import { recordQuery } from "../src/server/metrics.ts";
import { exposedNames, fakeEntry, fakeSensor } from "./support/fake_sensor.ts";

const DASHBOARD = new URL("../deploy/grafana_dashboard.json", import.meta.url);

/** Every `expr` in the dashboard, and the metrics its template variables query. */
function dashboardQueries(): { exprs: string[]; variableMetrics: string[] } {
  const doc = JSON.parse(Deno.readTextFileSync(DASHBOARD));
  const exprs: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (typeof node === "object" && node !== null) {
      for (const [key, value] of Object.entries(node)) {
        if (key === "expr" && typeof value === "string") exprs.push(value);
        else walk(value);
      }
    }
  };
  walk(doc.panels);
  const variableMetrics: string[] = [];
  for (const v of doc.templating.list as { type: string; definition?: string }[]) {
    if (v.type !== "query") continue;
    const m = /^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(v.definition ?? "");
    assert.ok(m, `variable query ${v.definition}: expected label_values(metric...)`);
    variableMetrics.push(m[1]);
  }
  return { exprs, variableMetrics };
}

/** Grafana's variables replaced by values PromQL accepts. */
function substitute(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)/g, "5m").replace(/\$\{?\w+\}?/g, ".*");
}

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "offset",
  "and",
  "or",
  "unless",
  "inf",
  "nan",
]);

/** Metric names in a PromQL expression: identifiers that are not functions, keywords or labels. */
function metricNames(expr: string): string[] {
  const bare = substitute(expr)
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // label values
    .replace(/\[[^\]]*\]/g, "") // range selectors
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "") // label lists
    .replace(/\{[^}]*\}/g, ""); // matchers
  const names: string[] = [];
  for (const m of bare.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()/g)) {
    if (!KEYWORDS.has(m[1].toLowerCase())) names.push(m[1]);
  }
  return names;
}

Deno.test("metricNames finds the metrics of an expression and nothing else", () => {
  assert.deepEqual(
    metricNames(
      'histogram_quantile(0.9, sum by (le) (rate(x_bucket{a=~"$i",b!="rate(y)"}[$__rate_interval]))) ' +
        "/ on (instance) group_left (le) 8 * y_total offset 5m and 1e3 > bool z",
    ),
    ["x_bucket", "y_total", "z"],
  );
});

Deno.test("every dashboard expression is valid PromQL (promtool check rules)", async () => {
  const { exprs } = dashboardQueries();
  assert.ok(exprs.length >= 20, `only ${exprs.length} expressions`);
  const rules = exprs.map((e, i) =>
    `      - record: dashboard:expr_${i}\n        expr: ${JSON.stringify(substitute(e))}\n`
  );
  const dir = Deno.makeTempDirSync({ prefix: "cutcap-dashboard-" });
  try {
    Deno.writeTextFileSync(
      `${dir}/rules.yml`,
      `groups:\n  - name: dashboard\n    rules:\n${rules.join("")}`,
    );
    const out = await new Deno.Command("promtool", {
      args: ["check", "rules", `${dir}/rules.yml`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, new RegExp(`SUCCESS: ${exprs.length} rules found`));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("every metric the dashboard uses is exported by /metrics", async () => {
  const sensor = fakeSensor();
  sensor.catalog().add(fakeEntry("2024/06/01/a.pcap", 1717200000, 1717200060, 1000));
  recordQuery("ok", 0.1, 100);
  const text = await (await createApp(sensor).request("/metrics")).text();
  const exported = exposedNames(text);
  const { exprs, variableMetrics } = dashboardQueries();
  const used = new Set([...exprs.flatMap(metricNames), ...variableMetrics]);
  const missing = [...used].filter((name) => !exported.has(name));
  assert.deepEqual(missing, [], `not in /metrics: ${missing.join(", ")}`);
  // The panels the dashboard promises are there.
  for (
    const name of [
      "cutcap_packets_seen_total",
      "cutcap_packets_written_total",
      "cutcap_pcap_dropped_total",
      "cutcap_flows_active",
      "cutcap_flow_size_bytes_bucket",
      "cutcap_disk_free_bytes",
      "cutcap_archive_bytes",
      "cutcap_retention_deleted_bytes_total",
      "cutcap_oldest_packet_age_seconds",
      "cutcap_queries_total",
      "cutcap_query_duration_seconds_bucket",
    ]
  ) {
    assert.ok(used.has(name), `dashboard has no panel on ${name}`);
  }
  Deno.removeSync(sensor.outDir, { recursive: true });
});
