/**
 * The layout's rules (issue 10, DESIGN.md "Folders"), checked on the source text so they stay true:
 * imports follow the data flow, the server and the capture process do not import each other, every
 * dlopen is in ffi/, the pcap magic numbers and the caplen limit are written once, the naming
 * module depends on nothing but the codec table, the worker opens live sources only through
 * openSource, and the pipeline benchmark and fuzz test run the shipped pipeline. Imports are read
 * from every `import … from`, `export … from`, `import("…")` and `new URL("…", import.meta.url)`
 * (a worker's script) in src/, main.ts and ffi/.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url).pathname;

/** A module of the project and the project modules it refers to (paths relative to the root). */
interface Module {
  path: string;
  text: string;
  imports: { target: string; typeOnly: boolean }[];
}

const IMPORT = /^(import|export)\s+(type\s+)?[^;"]*?\bfrom\s+"([^"]+)"/gm;
const DYNAMIC = /\bimport\(\s*"([^"]+)"\s*\)/g;
const WORKER_URL = /\bnew URL\(\s*"([^"]+)",\s*import\.meta\.url\s*\)/g;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(`${ROOT}${dir}`)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...sourceFiles(path));
    else if (entry.isFile && path.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** `spec` as seen from `from`, relative to the root; null for packages (npm:, jsr:, node:, bare). */
function resolve(from: string, spec: string): string | null {
  if (!spec.startsWith(".")) return null;
  const url = new URL(spec, `file:///${from}`);
  return url.pathname.slice(1);
}

function readModules(): Module[] {
  const files = [...sourceFiles("src"), ...sourceFiles("ffi"), "main.ts"];
  return files.map((path) => {
    const text = withoutComments(Deno.readTextFileSync(`${ROOT}${path}`));
    const imports: Module["imports"] = [];
    const add = (spec: string, typeOnly: boolean) => {
      const target = resolve(path, spec);
      if (target !== null) imports.push({ target, typeOnly });
    };
    for (const m of text.matchAll(IMPORT)) add(m[3], m[2] !== undefined);
    for (const m of text.matchAll(DYNAMIC)) add(m[1], false);
    for (const m of text.matchAll(WORKER_URL)) add(m[1], false);
    return { path, text, imports };
  });
}

const modules = readModules();

/** Every import from a module under one of `from` to a module under one of `to`. */
function crossings(from: string[], to: string[]): string[] {
  const under = (path: string, dirs: string[]) => dirs.some((d) => path.startsWith(d));
  return modules.flatMap((m) =>
    under(m.path, from)
      ? m.imports.filter((i) => under(i.target, to)).map((i) => `${m.path} imports ${i.target}`)
      : []
  );
}

/** `text` without block and line comments (a `//` inside a string such as a URL stays). */
function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

Deno.test("the import reader sees static, type, dynamic and worker-script imports", () => {
  const find = (path: string) => modules.find((m) => m.path === path)!.imports;
  const capture = find("src/cli/capture.ts").map((i) => i.target);
  assert.ok(capture.includes("src/sensor/capture.ts"), "static import");
  assert.ok(capture.includes("src/server/mod.ts"), "dynamic import");
  assert.ok(
    find("src/cli/capture.ts").some((i) => i.target === "src/server/view.ts" && i.typeOnly),
    "type import",
  );
  assert.ok(
    find("src/sensor/supervisor.ts").some((i) => i.target === "src/worker/worker.ts"),
    "worker script",
  );
  assert.ok(modules.length > 100, `${modules.length} modules read`);
});

Deno.test("nothing under src/store/ imports src/index/", () => {
  assert.deepEqual(crossings(["src/store/"], ["src/index/"]), []);
});

Deno.test("the server (src/server/, src/web/) imports nothing of the capture process", () => {
  assert.deepEqual(crossings(["src/server/", "src/web/"], ["src/sensor/", "src/worker/"]), []);
});

Deno.test("the capture process (src/sensor/, src/worker/) imports nothing of the server", () => {
  assert.deepEqual(crossings(["src/sensor/", "src/worker/"], ["src/server/", "src/web/"]), []);
});

Deno.test("src/archive/naming.ts imports only the codec table (its suffixes) and types", () => {
  const naming = modules.find((m) => m.path === "src/archive/naming.ts")!;
  const runtime = naming.imports.filter((i) => !i.typeOnly).map((i) => i.target);
  assert.deepEqual(runtime, ["src/pcap/codecs.ts"]);
});

Deno.test("Deno.dlopen is called only under ffi/", () => {
  const callers = modules.filter((m) =>
    !m.path.startsWith("ffi/") && m.text.split("\n").some((line) => line.includes("Deno.dlopen"))
  ).map((m) => m.path);
  assert.deepEqual(callers, []);
});

Deno.test("pcap magic numbers and the caplen limit are written once, in src/pcap/format.ts", () => {
  // Both byte orders of the microsecond, nanosecond and modified (Kuznetzov) magics; 256 KiB.
  const literal =
    /\b(0xa1b2c3d4|0xd4c3b2a1|0xa1b23c4d|0x4d3cb2a1|0xa1b2cd34|0x34cdb2a1|262_?144|0x40000)\b/i;
  const found = modules.flatMap((m) =>
    m.text.split("\n").filter((line) => literal.test(line)).map((line) =>
      `${m.path}: ${line.trim()}`
    )
  );
  assert.deepEqual(found.filter((f) => !f.startsWith("src/pcap/format.ts:")), []);
  assert.equal(found.length, 4, found.join("\n"));
});

Deno.test("the worker opens live sources only through openSource, which closes them on failure", () => {
  const direct = /\bPcapHandle\.openLive\b|\bPacketRing\b|\bjoinFanout\b/;
  const found = modules.filter((m) => m.path.startsWith("src/worker/") && direct.test(m.text))
    .map((m) => m.path);
  assert.deepEqual(found, []);
  const worker = modules.find((m) => m.path === "src/worker/worker.ts")!;
  assert.ok(worker.imports.some((i) => i.target === "src/capture/source.ts"));
});

Deno.test("the pipeline benchmark and the pipeline fuzz test run the shipped pipeline", () => {
  for (const path of ["bench/pipeline.ts", "tests/support/pipeline_fuzz.ts"]) {
    const text = withoutComments(Deno.readTextFileSync(`${ROOT}${path}`));
    const imports = [...text.matchAll(IMPORT)].map((m) => resolve(path, m[3]));
    assert.ok(imports.includes("src/worker/pipeline.ts"), `${path} imports src/worker/pipeline.ts`);
    assert.match(text, /\bnew CapturePipeline\(/, path);
    assert.match(text, /\.handle\(/, path);
  }
});
