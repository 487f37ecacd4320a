/**
 * The analyst's page, rendered on the server in full (so a plain fetch or `chromium --dump-dom` sees
 * the flows table) with hono's `html` templates, which escape every interpolated value: nothing from
 * packets, file names or interfaces reaches the page as markup. app.js only adds validation as the
 * user types, brushing the histogram and copying the command line.
 */
import { html, raw } from "hono/html";
import type { FlowPage, FlowRow, Histogram, SortKey, StatusTable, StatusView } from "./source.ts";
import {
  formatQueryTime,
  PAGE_ROWS,
  RANGES,
  type SearchProblem,
  type SearchState,
  searchUrl,
} from "./search.ts";
import { bytes, count, duration, renderStatusSections, si } from "../server/status_page.ts";
import { VERSION } from "../version.ts";

/** HTML whose values are already escaped. */
export type Html = ReturnType<typeof raw>;

/** Wraps hono's `html` for synchronous templates (no promise is ever interpolated here). */
function h(strings: TemplateStringsArray, ...values: unknown[]): Html {
  return html(strings, ...values) as Html;
}

/** What every page's frame shows. */
export interface Frame {
  title: string;
  state: SearchState;
  /** CSRF token of the logged-in session (a logout button is shown), if any. */
  csrf?: string;
  /** Seconds between automatic reloads (status view). */
  refresh?: number;
}

/** The document around a view: header, navigation, the page's own CSS and script. */
export function renderFrame(frame: Frame, body: Html): string {
  const nav = (view: SearchState["view"], label: string) =>
    h`<a href="${searchUrl(frame.state, { view, page: 1 })}"${
      raw(frame.state.view === view ? ' aria-current="page"' : "")
    }>${label}</a>`;
  return h`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${frame.refresh ? h`<meta http-equiv="refresh" content="${frame.refresh}">` : ""}
<title>${frame.title}</title>
<link rel="stylesheet" href="/web/style.css">
<script src="/web/app.js" defer></script>
</head><body>
<header><span class="brand">cutcap</span><nav>${nav("search", "Search")} ${
    nav("status", "Status")
  }</nav>${
    frame.csrf === undefined ? "" : h`<form method="post" action="/logout" class="logout">
<input type="hidden" name="csrf" value="${frame.csrf}"><button type="submit">Log out</button></form>`
  }</header>
<main>${body}</main>
</body></html>
`.toString();
}

/** What the search view shows. */
export interface SearchView {
  state: SearchState;
  /** Why the search cannot run. */
  problem?: SearchProblem;
  /** The whole query text that ran (user's query and time range). */
  queryText?: string;
  page?: FlowPage;
  histogram?: Histogram;
  /** Path of the pcap answer (`/query?q=…`). */
  downloadPath?: string;
  /** Base URL for the `cutcap read --server` line. */
  origin: string;
  /** The server needs a token: the command line takes it from CUTCAP_TOKEN. */
  tokenRequired?: boolean;
}

/** The search view: form, histogram, flows table. */
export function renderSearch(view: SearchView): Html {
  return h`${searchForm(view.state, view.problem)}
${view.histogram === undefined ? "" : histogramSection(view.state, view.histogram)}
${
    view.page === undefined || view.queryText === undefined
      ? h`<p class="hint">Type a query in either dialect — <code>host 198.18.0.7 and port 443</code>, <code>ip=198.18.0.0/16 proto=udp last=1h</code> — and press Enter.</p>`
      : results(view)
  }`;
}

function searchForm(state: SearchState, problem?: SearchProblem): Html {
  const qProblem = problem?.field === "q" ? problem : undefined;
  const timeProblem = problem !== undefined && problem.field !== "q" ? problem : undefined;
  const option = (value: string, label: string) =>
    h`<option value="${value}"${raw(state.range === value ? " selected" : "")}>${label}</option>`;
  return h`<form id="search" method="get" action="/" role="search" novalidate>
<div class="row">
<label for="q" class="sr">Query</label>
<input id="q" name="q" value="${state.q}" autocomplete="off" spellcheck="false" autofocus
 placeholder="host 198.18.0.7 and port 443 · ip=198.18.0.0/16 proto=udp" aria-describedby="q-error"${
    raw(qProblem ? ' aria-invalid="true"' : "")
  }>
<button type="submit">Search</button>
</div>
<div class="row times">
<label>Time <select id="range" name="range">${option("", "any time / from–to")}${
    RANGES.map((r) => option(r, `last ${r}`))
  }</select></label>
<label>from <input id="from" name="from" value="${state.from}" placeholder="2026-11-23T10:00:00Z" size="22"${
    raw(timeProblem?.field === "from" ? ' aria-invalid="true"' : "")
  }></label>
<label>to <input id="to" name="to" value="${state.to}" placeholder="2026-11-23T11:00:00Z" size="22"${
    raw(timeProblem?.field === "to" ? ' aria-invalid="true"' : "")
  }></label>
${state.sort !== "first" ? h`<input type="hidden" name="sort" value="${state.sort}">` : ""}
${state.descending ? h`<input type="hidden" name="dir" value="desc">` : ""}
${state.bytes ? h`<input type="hidden" name="hist" value="bytes">` : ""}
</div>
<div id="q-error" class="error" role="alert"${raw(problem ? "" : " hidden")}>${
    problem ? problemText(state, problem) : ""
  }</div>
</form>`;
}

/** The message and, for the query box, the query with the offending character marked. */
function problemText(state: SearchState, problem: SearchProblem): Html {
  if (problem.field !== "q" || state.q === "") {
    return h`<span class="message">${problem.message}</span>`;
  }
  const at = Math.min(problem.position, state.q.length);
  return h`<span class="message">${problem.message}</span>
<code class="where">${state.q.slice(0, at)}<mark>${state.q.slice(at, at + 1) || " "}</mark>${
    state.q.slice(at + 1)
  }</code>`;
}

function histogramSection(state: SearchState, hist: Histogram): Html {
  const count = hist.packets.length;
  const values = state.bytes ? hist.bytes : hist.packets;
  const top = Math.max(1, ...values);
  const bars = hist.packets.map((packets, i) => {
    const from = hist.from + i * hist.bucketSeconds;
    const height = values[i] === 0 ? 0 : Math.max(2, (values[i] / top) * 100);
    const url = searchUrl(state, {
      range: "",
      from: isoSeconds(from),
      to: isoSeconds(from + hist.bucketSeconds),
      page: 1,
    });
    return h`<a href="${url}" tabindex="-1" aria-label="${
      isoSeconds(from)
    }: ${packets} packets"><rect x="${i}" y="${
      100 - height
    }" width="0.9" height="${height}" data-packets="${packets}" data-bytes="${
      hist.bytes[i]
    }" data-from="${from}"><title>${isoSeconds(from)} +${
      span(hist.bucketSeconds)
    }: ${packets} packets, ${bytes(hist.bytes[i])}</title></rect></a>`;
  });
  const total = hist.packets.reduce((a, b) => a + b, 0);
  return h`<section id="histogram" aria-label="Matching packets over time">
<svg id="hist" tabindex="0" aria-label="Histogram: arrow keys pick buckets, Shift widens, Enter narrows the time range to them" viewBox="0 0 ${
    Math.max(count, 1)
  } 100" preserveAspectRatio="none" data-from="${hist.from}" data-step="${hist.bucketSeconds}" data-count="${count}" data-total="${total}">${bars}<rect id="brush" x="0" y="0" width="0" height="100"></rect></svg>
<div class="axis"><span>${count ? isoSeconds(hist.from) : ""}</span><span>${
    count
      ? `${state.bytes ? "bytes (a flow's spread over its packets)" : "packets"} per ${
        span(hist.bucketSeconds)
      } · drag to zoom · `
      : "no packets"
  }${
    count
      ? h`<a id="hist-unit" href="${searchUrl(state, { bytes: !state.bytes })}">show ${
        state.bytes ? "packets" : "bytes"
      }</a>`
      : ""
  }</span><span>${count ? isoSeconds(hist.from + count * hist.bucketSeconds) : ""}</span></div>
</section>`;
}

function results(view: SearchView): Html {
  const page = view.page!;
  const state = view.state;
  const first = (state.page - 1) * PAGE_ROWS;
  const shown = page.rows.length;
  const more = first + shown < page.sortedOver;
  const command = `cutcap read --server ${view.origin} ${shellQuote(view.queryText!)}`;
  return h`<section id="results">
<div class="summary"><p id="count"><strong data-flows="${page.flows}">${
    count(page.flows)
  }</strong> ${page.flows === 1 ? "flow" : "flows"}, <span data-packets="${page.packets}">${
    count(page.packets)
  }</span> packets, <span data-bytes="${page.bytes}">${bytes(page.bytes)}</span> stored${
    page.sortedOver < page.flows ? ` (sorted among the first ${count(page.sortedOver)})` : ""
  }</p>
<p class="actions"><a id="download" class="button" href="${view.downloadPath}" download>Download pcap</a>
<code id="cli">${command}</code> <button type="button" id="copy" data-copy="${command}">Copy</button>${
    view.tokenRequired ? h` <small>(with the token in <code>CUTCAP_TOKEN</code>)</small>` : ""
  }</p></div>
<div class="scroll"><table id="flows">
<thead><tr>${columns(page.rows).map((c) => header(state, c))}</tr></thead>
<tbody>${page.rows.map((r) => row(state, r, columns(page.rows)))}</tbody>
</table></div>
<nav class="pager" aria-label="Pages">${
    state.page > 1
      ? h`<a rel="prev" href="${searchUrl(state, { page: state.page - 1 })}">← previous</a>`
      : ""
  } <span>rows ${shown ? first + 1 : 0}–${first + shown} of ${count(page.sortedOver)}</span> ${
    more ? h`<a rel="next" href="${searchUrl(state, { page: state.page + 1 })}">next →</a>` : ""
  }</nav>
</section>`;
}

interface Column {
  label: string;
  sort?: SortKey;
  /** Right-aligned figures. */
  numeric?: boolean;
  cell(state: SearchState, r: FlowRow): Html | string;
}

const OPTIONAL_COLUMNS: [keyof FlowRow, Column][] = [
  ["sensor", {
    label: "Sensor",
    sort: "sensor",
    cell: (s, r) =>
      r.sensor === undefined
        ? ""
        : h`<a class="add" href="${
          searchUrl(s, { q: addTerm(s.q, `sensor ${r.sensor}`), page: 1 })
        }" title="add sensor ${r.sensor} to the query">${r.sensor}</a>`,
  }],
];

/** The table's columns: optional ones only when some row has their field. */
function columns(rows: readonly FlowRow[]): Column[] {
  const has = (field: keyof FlowRow) => rows.some((r) => r[field] !== undefined && r[field] !== "");
  const cols: Column[] = [{
    label: "Time (UTC)",
    sort: "first",
    cell: (_s, r) =>
      h`<time datetime="${formatQueryTime(r.first)}" title="${
        formatQueryTime(r.first)
      } in ${r.file}">${formatQueryTime(r.first).replace(/(\.\d{3})\d{3}Z$/, "$1Z")}</time>`,
  }];
  for (const [field, column] of OPTIONAL_COLUMNS) if (has(field)) cols.push(column);
  cols.push(
    { label: "Source", sort: "src", cell: (s, r) => address(s, r, r.src) },
    { label: "Destination", sort: "dst", cell: (s, r) => address(s, r, r.dst) },
    { label: "Ports", sort: "srcPort", cell: (_s, r) => ports(r) },
    { label: "Proto", sort: "proto", cell: (_s, r) => protocolName(r) },
    { label: "VLAN", numeric: true, sort: "vlan", cell: (_s, r) => r.vlan ? String(r.vlan) : "" },
  );
  if (has("communityId")) {
    cols.push({ label: "Community ID", sort: "communityId", cell: communityId });
  }
  cols.push(
    { label: "Stored packets", numeric: true, sort: "packets", cell: (_s, r) => count(r.packets) },
    { label: "Stored bytes", numeric: true, sort: "bytes", cell: (_s, r) => count(r.bytes) },
  );
  if (has("totalPackets")) {
    cols.push(
      {
        label: "Total packets",
        numeric: true,
        sort: "totalPackets",
        cell: (_s, r) => r.totalPackets === undefined ? "" : count(r.totalPackets),
      },
      {
        label: "Total bytes",
        numeric: true,
        sort: "totalBytes",
        cell: (_s, r) => r.totalBytes === undefined ? "" : count(r.totalBytes),
      },
    );
  }
  if (has("cut")) {
    cols.push({
      label: "Cut",
      cell: (_s, r) =>
        r.cut
          ? h`<span class="cut" title="cut off at packet ${r.cutPacket}: it and later packets not stored">cut</span>`
          : "",
    });
  }
  if (has("endReason")) cols.push({ label: "End", cell: (_s, r) => r.endReason ?? "" });
  cols.push({
    label: "pcap",
    cell: (_s, r) =>
      r.pcapQuery === ""
        ? ""
        : h`<a class="pcap" href="/query?q=${
          encodeURIComponent(r.pcapQuery)
        }" download title="${r.pcapQuery}">pcap</a>`,
  });
  return cols;
}

function header(state: SearchState, c: Column): Html {
  if (c.sort === undefined) return h`<th scope="col">${c.label}</th>`;
  const active = state.sort === c.sort;
  const descending = active ? !state.descending : false;
  const mark = active ? (state.descending ? " ▼" : " ▲") : "";
  return h`<th scope="col"${
    raw(active ? ` aria-sort="${state.descending ? "descending" : "ascending"}"` : "")
  }><a href="${
    searchUrl(state, { sort: c.sort, descending, page: 1 })
  }">${c.label}${mark}</a></th>`;
}

function row(state: SearchState, r: FlowRow, cols: Column[]): Html {
  return h`<tr>${
    cols.map((c) =>
      c.numeric ? h`<td class="n">${c.cell(state, r)}</td>` : h`<td>${c.cell(state, r)}</td>`
    )
  }</tr>`;
}

/** An address that narrows the query to it when clicked (`host X`, or `ether host X` for MACs). */
function address(state: SearchState, r: FlowRow, value: string): Html | string {
  const term = r.kind === "ipv4" || r.kind === "ipv6"
    ? `host ${value}`
    : r.kind === "l2"
    ? `ether host ${value}`
    : "";
  if (term === "" || value === "") return value;
  return h`<a class="add" href="${
    searchUrl(state, { q: addTerm(state.q, term), page: 1 })
  }" title="add ${term} to the query">${value}</a>`;
}

function communityId(state: SearchState, r: FlowRow): Html | string {
  if (!r.communityId) return ""; // non-IP flows have none
  return h`<a class="add cid" href="${
    searchUrl(state, { q: addTerm(state.q, `community-id ${r.communityId}`), page: 1 })
  }" title="${r.communityId}: add it to the query">${r.communityId}</a>`;
}

/** `q` narrowed by `term` (and/or are equal precedence, left to right: the term applies to all). */
export function addTerm(q: string, term: string): string {
  return q.trim() === "" ? term : `${q.trim()} and ${term}`;
}

function ports(r: FlowRow): string {
  if (r.kind === "l2") {
    return r.etherTypeName || `type 0x${r.etherType.toString(16).padStart(4, "0")}`;
  }
  if (r.proto !== 6 && r.proto !== 17 && r.proto !== 132) return "";
  return `${r.srcPort} → ${r.dstPort}`;
}

const PROTOCOLS: Record<number, string> = {
  1: "ICMP",
  2: "IGMP",
  6: "TCP",
  17: "UDP",
  47: "GRE",
  50: "ESP",
  51: "AH",
  58: "ICMPv6",
  132: "SCTP",
};

function protocolName(r: FlowRow): string {
  if (r.kind === "l2") return "L2";
  if (r.kind !== "ipv4" && r.kind !== "ipv6") return r.kind;
  return PROTOCOLS[r.proto] ?? String(r.proto);
}

/** The status view: today's tables, rate sparklines, the running configuration. */
export function renderStatus(view: StatusView): Html {
  const report = view.report;
  const lag = view.queryableLagSeconds;
  const ready = report === undefined ? "" : report.ready ? " · ready" : " · not ready";
  const history = view.history[0];
  const span = history === undefined
    ? 0
    : history.packetsPerSecond.length * history.intervalSeconds;
  return h`<section id="status">
<h1>Status <small>cutcap ${view.version}${ready}</small></h1>
<table class="kv"><tr><th>Newest queryable packet</th><td id="lag">${
    lag === null ? "none yet" : `${duration(lag)} ago`
  }</td></tr></table>
${report === undefined ? "" : raw(renderStatusSections(report))}
${(view.tables ?? []).map(statusTable)}
<div class="columns"><div>
<h2>Rates over the last ${duration(span)}</h2>
${
    view.history.length === 0
      ? h`<p>No capture workers.</p>`
      : h`<div class="scroll"><table id="sparklines">
<tr><th>Worker</th><th>Packets/s</th><th>Bits/s</th><th>Drops/s</th></tr>${
        view.history.map((w) =>
          h`<tr><td>${w.worker}</td><td>${spark(w.packetsPerSecond)}</td><td>${
            spark(w.bitsPerSecond)
          }</td><td>${spark(w.dropsPerSecond)}</td></tr>`
        )
      }</table></div><p><small>A sample every ${
        duration(history!.intervalSeconds)
      }; the number is the latest.</small></p>`
  }
</div><div>
<h2>Running configuration</h2>
${
    view.settings.length === 0
      ? h`<p>Not reported.</p>`
      : h`<table class="kv" id="settings">${
        view.settings.map(([k, v]) => h`<tr><th>${k}</th><td>${v}</td></tr>`)
      }</table>`
  }
</div></div>
</section>`;
}

function statusTable(table: StatusTable): Html {
  return h`<h2>${table.title}</h2><table><tr>${table.columns.map((c) => h`<th>${c}</th>`)}</tr>${
    table.rows.map((r) => h`<tr>${r.map((cell) => h`<td>${cell}</td>`)}</tr>`)
  }</table>`;
}

/** A sparkline (SVG polyline) with the latest value beside it. */
function spark(values: readonly number[]): Html {
  const top = Math.max(...values, 1e-9);
  const n = Math.max(values.length - 1, 1);
  const points = values.map((v, i) =>
    `${(i / n * 100).toFixed(1)},${(20 - v / top * 19).toFixed(1)}`
  )
    .join(" ");
  const last = values.at(-1) ?? 0;
  return h`<svg class="spark" viewBox="0 0 100 20" preserveAspectRatio="none" role="img" aria-label="latest ${
    si(last)
  }, peak ${si(top)}"><polyline points="${points}"></polyline></svg> <span>${si(last)}</span>`;
}

/** The login form (with `--token-file`). */
export function renderLogin(next: string, error?: string): string {
  return h`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cutcap — log in</title>
<link rel="stylesheet" href="/web/style.css">
</head><body>
<header><span class="brand">cutcap</span></header>
<main><form id="login" method="post" action="/login">
<h1>Log in</h1>
<p>This server needs its access token (the first line of its <code>--token-file</code>).</p>
${error ? h`<p class="error" role="alert">${error}</p>` : ""}
<input type="hidden" name="next" value="${next}">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Log in</button>
</form></main>
</body></html>
`.toString();
}

/** Title of the search view. */
export function searchTitle(state: SearchState): string {
  return state.q === "" ? `cutcap ${VERSION}` : `${state.q} — cutcap`;
}

/** A POSIX shell word holding `text` exactly. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A bucket width: milliseconds below a second. */
function span(seconds: number): string {
  return seconds < 1 ? `${Math.round(seconds * 1000)}ms` : duration(seconds);
}

function isoSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, "Z");
}
