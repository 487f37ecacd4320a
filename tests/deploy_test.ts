/**
 * deploy/ stays correct: the unit passes systemd-analyze verify, the Prometheus example passes
 * promtool check config, and cutcap.env lists every capture option with its real default.
 */
import assert from "node:assert/strict";
import { CAPTURE_OPTIONS } from "../src/config.ts";

const DEPLOY = new URL("../deploy/", import.meta.url).pathname;

async function run(cmd: string, args: string[]): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, text: (decode(out.stdout) + decode(out.stderr)).trim() };
}

function hasCommand(cmd: string): boolean {
  try {
    new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
}

Deno.test("cutcap.env lists every capture option with its default", () => {
  const env = Deno.readTextFileSync(`${DEPLOY}cutcap.env`);
  for (const [name, spec] of Object.entries(CAPTURE_OPTIONS)) {
    const line = env.split("\n").find((l) =>
      l.startsWith(`#   --${name} `) || l === `#   --${name}`
    );
    assert.ok(line, `--${name} is not documented in cutcap.env`);
    if ("default" in spec && typeof spec.default === "string" && spec.default !== "") {
      assert.ok(
        line.includes(`[${spec.default}]`),
        `--${name}: expected default [${spec.default}] in "${line}"`,
      );
    }
  }
  assert.match(env, /^CUTCAP_OPTS="[^"\n]*--interface [^"\n]*"$/m);
});

Deno.test({
  name: "cutcap.service passes systemd-analyze verify",
  ignore: !hasCommand("systemd-analyze"),
  fn: async () => {
    const unit = Deno.readTextFileSync(`${DEPLOY}cutcap.service`);
    for (
      const line of [
        "Type=notify",
        "User=cutcap",
        "EnvironmentFile=/etc/default/cutcap",
        "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN",
        "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/cutcap",
        "WatchdogSec=30",
        "Restart=on-failure",
      ]
    ) {
      assert.ok(unit.split("\n").includes(line), `missing ${line}`);
    }
    assert.match(unit, /^ExecStart=\/usr\/local\/bin\/cutcap capture \$CUTCAP_OPTS /m);
    // verify insists that ExecStart's binary exists: check a copy that runs /bin/true instead.
    const dir = Deno.makeTempDirSync({ prefix: "cutcap-unit-" });
    try {
      Deno.writeTextFileSync(
        `${dir}/cutcap.service`,
        unit.replace("/usr/local/bin/cutcap", "/bin/true"),
      );
      const result = await run("systemd-analyze", ["verify", `${dir}/cutcap.service`]);
      assert.equal(result.code, 0, result.text);
      assert.equal(result.text, "");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("prometheus.yml passes promtool check config", async () => {
  const result = await run("promtool", ["check", "config", `${DEPLOY}prometheus.yml`]);
  assert.equal(result.code, 0, result.text);
  assert.match(result.text, /SUCCESS/);
});
