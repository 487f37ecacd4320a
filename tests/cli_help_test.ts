/**
 * The operator's first commands: every subcommand runs from source through `deno task cutcap`, each
 * has its own help generated from the option table its parser uses, typos and gotm's spellings get
 * the option meant, and `deno task compile` says in one line where a `denort` comes from.
 */
import assert from "node:assert/strict";
import { cutcap } from "./support/oracle.ts";
import { rootOnly } from "./support/root.ts";
import { CAPTURE_OPTIONS } from "../src/config.ts";
import { SERVE_OPTIONS } from "../src/cli/serve.ts";
import { FLOWS_OPTIONS, QUERY_OPTIONS, READ_OPTIONS } from "../src/cli/query_client.ts";
import { INDEX_OPTIONS } from "../src/cli/index_files.ts";
import { COMMAND_HELP } from "../src/help.ts";
import { FLEET_OPTIONS } from "../src/fleet/mod.ts";
import type { OptionTable } from "../src/cli/options.ts";

const ROOT_DIR = new URL("..", import.meta.url).pathname;
const TABLES: Record<string, OptionTable> = {
  capture: CAPTURE_OPTIONS,
  serve: SERVE_OPTIONS,
  fleet: FLEET_OPTIONS,
  query: QUERY_OPTIONS,
  read: READ_OPTIONS,
  flows: FLOWS_OPTIONS,
  index: INDEX_OPTIONS,
  interfaces: {},
  version: {},
  help: {},
};

/** Runs `deno task -q NAME ARGS` in the repository, as README tells an operator to. */
async function task(
  name: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", name, ...args],
    cwd: ROOT_DIR,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** The long option names a help text lists, in order. */
function listedOptions(help: string): string[] {
  return [...help.matchAll(/^ {2}(?:-\w, | {4})--([a-z-]+)/gm)].map((m) => m[1]);
}

Deno.test("deno task cutcap runs every subcommand from source with the start task's permissions", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT_DIR}deno.json`)).tasks;
  assert.equal(
    tasks.cutcap.replace(/ main\.ts$/, ""),
    tasks.start.replace(/ main\.ts capture$/, ""),
    "cutcap and start grant the same permissions",
  );
  // `deno task -q`, as README says for output to a file: no "Task" line, no colour anywhere.
  const plain = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "cutcap", "version"],
    cwd: ROOT_DIR,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const both = new TextDecoder().decode(plain.stdout) + new TextDecoder().decode(plain.stderr);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(both, /\x1b\[|^Task /m);
  const version = await task("cutcap", ["version"]);
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^cutcap \d+\.\d+\.\d+\ndeno 2\.9\.6 /);
  assert.equal(version.stderr, "");
  for (const command of ["capture", "serve", "query", "flows", "index", "interfaces"]) {
    const help = await task("cutcap", [command, "--help"]);
    assert.equal(help.code, 0, `${command}: ${help.stderr}`);
    assert.match(
      help.stdout,
      new RegExp(`^Usage: ${COMMAND_HELP[command].usage.replace(/[[\]]/g, "\\$&")}\n`),
    );
  }
  // A query without a server is an error naming the server, not "Unexpected argument".
  const query = await task("cutcap", ["query", "--server", "127.0.0.1:1", "host 198.18.0.1"]);
  assert.equal(query.code, 1);
  assert.match(query.stderr, /^cutcap: Cannot reach http:\/\/127\.0\.0\.1:1: /);
  const readme = await Deno.readTextFile(`${ROOT_DIR}README.md`);
  for (const command of ["query", "flows", "serve", "index", "interfaces"]) {
    assert.match(readme, new RegExp(`deno task cutcap ${command}`), `README shows ${command}`);
  }
});

Deno.test("every command's help lists exactly its parser's options; three spellings agree", async () => {
  for (const [command, table] of Object.entries(TABLES)) {
    const spellings = [[command, "--help"], [command, "-h"], ["help", command]];
    const outputs = await Promise.all(spellings.map((args) => cutcap(args)));
    for (const [i, out] of outputs.entries()) {
      assert.equal(out.code, 0, `${spellings[i].join(" ")}: ${out.stderr}`);
      assert.equal(out.stderr, "");
      assert.equal(out.stdout, outputs[0].stdout, `${spellings[i].join(" ")} = ${command} --help`);
    }
    assert.deepEqual(listedOptions(outputs[0].stdout), [...Object.keys(table), "help"], command);
  }
  // Every command main.ts dispatches (as its "Unknown command" line lists them) has its help.
  const unknown = await cutcap(["help", "frob"]);
  const commands = /expected one of (.*)$/m.exec(unknown.stderr)![1].split(", ");
  assert.deepEqual(commands, Object.keys(COMMAND_HELP));
  const interfaces = await cutcap(["interfaces", "--help"]);
  assert.equal(
    interfaces.stdout,
    "Usage: cutcap interfaces\n\nList capture interfaces\n\nOptions (defaults in brackets):\n" +
      "  -h, --help  this help\n",
  );
  const overview = await cutcap(["--help"]);
  assert.equal(overview.code, 0);
  for (const help of Object.values(COMMAND_HELP)) assert.ok(overview.stdout.includes(help.usage));
  assert.match(
    overview.stdout,
    /^ {6}--byte-cutoff SIZE +stop storing a flow after this many bytes, 0 = never \[64KiB\]$/m,
  );
});

const USAGE_ERRORS: [string[], string][] = [
  [["--byte-cutof", "1MB"], "Unknown option --byte-cutof: did you mean --byte-cutoff?"],
  [["--rotatesize=1GB"], "Unknown option --rotatesize: did you mean --rotate-size?"],
  [["--bogus"], "Unknown option --bogus (--help lists the options)"],
  [["-interface", "vb"], "Option -interface needs two dashes: --interface"],
  [["-bytecutoff", "8192"], "Option -bytecutoff is gotm's spelling: cutcap takes --byte-cutoff"],
  [
    ["-rotationinterval", "300s"],
    "Option -rotationinterval is gotm's spelling: cutcap takes --rotate-interval",
  ],
  [["-write", "out"], "Option -write is gotm's spelling: cutcap takes --out"],
  [
    ["--packetcutoff", "5"],
    "Unknown option --packetcutoff: gotm's -packetcutoff is --packet-cutoff in cutcap",
  ],
  [["--paket-cutoff", "5"], "Unknown option --paket-cutoff: did you mean --packet-cutoff?"],
  [
    ["--largeflowsize", "5"],
    "Unknown option --largeflowsize: gotm's -largeflowsize is --large-flow-threshold (gotm's value is in megabytes: 1024 → 1024MB) in cutcap",
  ],
  [["-x"], "Unknown option -x (--help lists the options)"],
  [["query", "--limt", "5", "tcp"], "Unknown option --limt: did you mean --limit?"],
  [["flows", "-w", "x", "tcp"], "Unknown option -w (--help lists the options)"],
  [["serve", "--listn", "127.0.0.1:1"], "Unknown option --listn: did you mean --listen?"],
  [["quer", "tcp"], 'Unknown command "quer": did you mean query? (cutcap help lists the commands)'],
  [
    ["help", "frob"],
    'Unknown command "frob": expected one of capture, serve, fleet, query, read, flows, index, interfaces, version, help',
  ],
  [["interfaces", "eth0"], 'Unexpected argument "eth0": cutcap interfaces takes none'],
  [["--workers", "0"], 'Invalid --workers "0": expected a whole number 1-64'],
];

Deno.test("usage mistakes: the flag named, the closest one suggested, exit status 2", async () => {
  const results = await Promise.all(USAGE_ERRORS.map(([args]) => cutcap(args)));
  for (const [i, [args, message]] of USAGE_ERRORS.entries()) {
    assert.deepEqual(
      { code: results[i].code, stderr: results[i].stderr, stdout: results[i].stdout },
      { code: 2, stderr: `cutcap: ${message}\n`, stdout: "" },
      args.join(" "),
    );
  }
  // A short option with its value glued on is still a short option.
  const glued = await cutcap(["-icc-nonexistent0", "--listen", "off", "--out", "/nonexistent/x"]);
  assert.notEqual(glued.code, 2, glued.stderr);
});

const CHECK = `${ROOT_DIR}deploy/check_denort.ts`;
const CHECK_FLAGS = [
  "--allow-env=DENORT_BIN,DENO_DIR,XDG_CACHE_HOME,HOME",
  "--allow-read",
  "--allow-net=dl.deno.land",
];

async function checkDenort(env: Record<string, string>, offline = false) {
  const deno = [Deno.execPath(), "run", ...CHECK_FLAGS, CHECK];
  const [program, ...args] = offline ? ["unshare", "-n", ...deno] : deno;
  const out = await new Deno.Command(program, {
    args,
    env: { NO_COLOR: "1", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("deno task compile checks for denort first and says what to do in one line", async (t) => {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT_DIR}deno.json`)).tasks;
  assert.ok(
    tasks.compile.startsWith(
      `deno run ${CHECK_FLAGS.join(" ")} deploy/check_denort.ts && deno compile `,
    ),
  );
  const v = Deno.version.deno;
  const url = `https://dl.deno.land/release/v${v}/denort-x86_64-unknown-linux-gnu.zip`;
  const remedy = `download ${url} where there is network, unzip it here and run ` +
    "DENORT_BIN=$PWD/denort deno task compile";
  assert.deepEqual(await checkDenort({ DENORT_BIN: "/nonexistent/denort" }), {
    code: 1,
    stderr: `DENORT_BIN=/nonexistent/denort is not an executable file: set it to the denort of ` +
      `Deno ${v} (${remedy})\n`,
  });
  const dir = await Deno.makeTempDir({ prefix: "cc-denort-" });
  try {
    const fake = `${dir}/denort`;
    await Deno.writeTextFile(fake, "#!/bin/sh\n");
    await Deno.chmod(fake, 0o755);
    assert.deepEqual(await checkDenort({ DENORT_BIN: fake }), { code: 0, stderr: "" });
    // A cached runtime is enough, network or not.
    const cached = `${dir}/deno/dl/release/v${v}`;
    await Deno.mkdir(cached, { recursive: true });
    await Deno.writeFile(`${cached}/denort-x86_64-unknown-linux-gnu.zip`, new Uint8Array(1));
    assert.deepEqual(await checkDenort({ DENO_DIR: `${dir}/deno` }), { code: 0, stderr: "" });
    await t.step(rootOnly("a network namespace (unshare -n)", {
      name: "offline, without a cached runtime",
      async fn() {
        // No cache, no network (a namespace with only a loopback that is down).
        const offline = await checkDenort({ DENO_DIR: `${dir}/empty` }, true);
        assert.equal(offline.code, 1);
        assert.match(
          offline.stderr,
          new RegExp(
            `^deno compile needs Deno's denort ${v.replaceAll(".", "\\.")} runtime: it is not in ` +
              `${dir}/empty/dl/release/v${
                v.replaceAll(".", "\\.")
              }/denort-x86_64-unknown-linux-gnu\\.zip ` +
              `and dl\\.deno\\.land cannot be reached \\([^\\n]+\\); download `,
          ),
        );
        assert.equal(offline.stderr.split("\n").length, 2, "one line");
      },
    }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(rootOnly("an offline run in a network namespace (unshare -n)", {
  name: "installed once, cutcap runs from source without any network",
  fn: async () => {
    const readme = await Deno.readTextFile(`${ROOT_DIR}README.md`);
    assert.match(readme, /npm install -g deno@2\.9\.6/);
    assert.match(readme, /deno install\b.*\n/);
    // The dependencies are in Deno's cache (this suite already ran from it): no network is needed.
    const started = performance.now();
    const out = await new Deno.Command("unshare", {
      // `help serve` loads the server's modules, hono and prom-client among them.
      args: ["-n", Deno.execPath(), "task", "-q", "cutcap", "help", "serve"],
      cwd: ROOT_DIR,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const seconds = (performance.now() - started) / 1000;
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(new TextDecoder().decode(out.stdout), /^Usage: cutcap serve /);
    assert.ok(seconds < 20, `took ${seconds.toFixed(1)} s offline`);
  },
}));
