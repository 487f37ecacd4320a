/**
 * sdNotify against a real AF_UNIX datagram socket that python3 binds and reads (Deno cannot bind
 * one), in a subprocess with NOTIFY_SOCKET set, as systemd would start cutcap.
 */
import assert from "node:assert/strict";
import { notifySocketAddress, sdNotify, watchdogInterval } from "../ffi/sd_notify.ts";

const MODULE = new URL("../ffi/sd_notify.ts", import.meta.url).href;

const RECEIVER = `
import socket, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + name[1:] if name.startswith("@") else name)
s.settimeout(20)
print("bound", flush=True)
data = s.recv(4096)
print("got " + data.decode(), flush=True)
`;

/** Starts python3 listening on `name`; resolves once it is bound, with a promise of what it got. */
async function listen(name: string): Promise<{ received: Promise<string> }> {
  const child = new Deno.Command("python3", {
    args: ["-c", RECEIVER, name],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("bound\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`python3 did not bind ${name}: got "${text}"`);
    text += value;
  }
  // Wrapped in an object: an async function returning a promise would wait for it.
  const received = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    await child.status;
    return text.replace("bound\n", "");
  })();
  return { received };
}

/** Runs sdNotify(state) in a fresh Deno process with the given environment; returns what it printed. */
async function notifyFrom(env: Record<string, string>, state: string): Promise<string> {
  const code = `import { sdNotify } from "${MODULE}"; console.log(sdNotify(${
    JSON.stringify(state)
  }));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, err);
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("sdNotify sends READY=1 to a socket path", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "cutcap-notify-" });
  try {
    const path = `${dir}/notify.sock`;
    const { received } = await listen(path);
    assert.equal(await notifyFrom({ NOTIFY_SOCKET: path }, "READY=1"), "true");
    assert.equal(await received, "got READY=1\n");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("sdNotify sends to an abstract socket (@name)", async () => {
  const name = `@cutcap-notify-test-${Deno.pid}`;
  const { received } = await listen(name);
  assert.equal(
    await notifyFrom({ NOTIFY_SOCKET: name }, "STATUS=capturing on eth0\nWATCHDOG=1"),
    "true",
  );
  assert.equal(await received, "got STATUS=capturing on eth0\nWATCHDOG=1\n");
});

Deno.test("sdNotify is a no-op returning false without NOTIFY_SOCKET or with a dead socket", async () => {
  const saved = Deno.env.get("NOTIFY_SOCKET");
  Deno.env.delete("NOTIFY_SOCKET");
  try {
    assert.equal(sdNotify("READY=1"), false);
  } finally {
    if (saved !== undefined) Deno.env.set("NOTIFY_SOCKET", saved);
  }
  const dir = Deno.makeTempDirSync({ prefix: "cutcap-notify-" });
  try {
    assert.equal(await notifyFrom({ NOTIFY_SOCKET: `${dir}/nobody.sock` }, "READY=1"), "false");
    assert.equal(await notifyFrom({ NOTIFY_SOCKET: "vsock:2:1234" }, "READY=1"), "false");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("notifySocketAddress lays out sockaddr_un for paths and abstract names", () => {
  const path = notifySocketAddress("/run/systemd/notify")!;
  assert.equal(path.length, 2 + "/run/systemd/notify".length + 1);
  assert.deepEqual([...path.address.subarray(0, 3)], [1, 0, "/".charCodeAt(0)]);
  const abstract = notifySocketAddress("@x/y")!;
  assert.equal(abstract.length, 2 + 1 + 3);
  assert.deepEqual([...abstract.address.subarray(0, 6)], [1, 0, 0, 120, 47, 121]);
  assert.equal(notifySocketAddress("/" + "a".repeat(107)), null);
  assert.equal(notifySocketAddress("relative.sock"), null);
});

Deno.test("watchdogInterval is half of WATCHDOG_USEC in seconds, for this process only", () => {
  const saved = { usec: Deno.env.get("WATCHDOG_USEC"), pid: Deno.env.get("WATCHDOG_PID") };
  try {
    Deno.env.delete("WATCHDOG_USEC");
    Deno.env.delete("WATCHDOG_PID");
    assert.equal(watchdogInterval(), undefined);
    Deno.env.set("WATCHDOG_USEC", "30000000");
    assert.equal(watchdogInterval(), 15);
    Deno.env.set("WATCHDOG_PID", String(Deno.pid));
    assert.equal(watchdogInterval(), 15);
    Deno.env.set("WATCHDOG_PID", String(Deno.pid + 1));
    assert.equal(watchdogInterval(), undefined);
    Deno.env.delete("WATCHDOG_PID");
    Deno.env.set("WATCHDOG_USEC", "0");
    assert.equal(watchdogInterval(), undefined);
    Deno.env.set("WATCHDOG_USEC", "soon");
    assert.equal(watchdogInterval(), undefined);
  } finally {
    const entries: [string, string | undefined][] = [
      ["WATCHDOG_USEC", saved.usec],
      ["WATCHDOG_PID", saved.pid],
    ];
    for (const [key, value] of entries) {
      if (value === undefined) Deno.env.delete(key);
      else Deno.env.set(key, value);
    }
  }
});
