// ffi/libc.ts: user lookup, uid, privilege dropping (in a child process), socket calls and their
// errors.
import assert from "node:assert/strict";
import {
  closeFd,
  dropPrivileges,
  getgid,
  getsockopt,
  getuid,
  interfaceIndex,
  LibcError,
  lookupUser,
  mapShared,
  pollEvents,
  setsockopt,
  socket,
  strerror,
  waitReadable,
} from "../ffi/libc.ts";
import { openFd } from "./support/files.ts";
import { rootOnly } from "./support/root.ts";

Deno.test("getuid/getgid agree with Deno, lookupUser reads the password database", async () => {
  assert.equal(getuid(), Deno.uid());
  assert.equal(getgid(), Deno.gid());
  const passwd = await Deno.readTextFile("/etc/passwd");
  const line = passwd.split("\n").find((l) => l.startsWith("nobody:"));
  assert.ok(line !== undefined);
  const [, , uid, gid] = line.split(":");
  assert.deepEqual(lookupUser("nobody"), { uid: Number(uid), gid: Number(gid) });
  assert.equal(lookupUser("cc-no-such-user"), undefined);
});

Deno.test("dropPrivileges: an unknown user is a clear error", () => {
  assert.throws(
    () => dropPrivileges("cc-no-such-user"),
    (err: Error) =>
      err.message ===
        `Unknown user "cc-no-such-user": expected an account in the password database`,
  );
});

Deno.test(rootOnly("dropping privileges", {
  name: "dropPrivileges: every thread of the process ends up as the user",
  async fn() {
    const url = new URL("../ffi/libc.ts", import.meta.url).href;
    const code = `import { dropPrivileges, getuid } from "${url}";
      dropPrivileges("nobody");
      const uids = new Set<string>();
      for (const t of Deno.readDirSync("/proc/self/task")) {
        const status = Deno.readTextFileSync("/proc/self/task/" + t.name + "/status");
        uids.add(/^Uid:\\s+(.*)$/m.exec(status)![1].split(/\\s+/).join(","));
      }
      console.log(getuid(), [...uids].join(" "));`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", code],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const uid = lookupUser("nobody")!.uid;
    assert.equal(new TextDecoder().decode(out.stdout).trim(), `${uid} ${uid},${uid},${uid},${uid}`);
  },
}));

Deno.test("setsockopt on a file that is not a socket fails with errno text", () => {
  const file = Deno.openSync("/etc/passwd");
  try {
    const fd = openFd("/etc/passwd");
    assert.ok(fd !== undefined);
    assert.throws(
      () => setsockopt(fd, { level: 263, name: 18, value: 1 }),
      (err: Error) =>
        err instanceof LibcError && err.errno === 88 &&
        err.message ===
          `setsockopt(fd ${fd}, level 263, option 18) failed: Socket operation on non-socket (errno 88)`,
    );
    assert.equal(waitReadable(fd, 0), true); // regular files always poll readable
  } finally {
    file.close();
  }
  assert.equal(strerror(22), "Invalid argument");
});

Deno.test("socket calls: options read back, poll reports readiness, errors carry errno", () => {
  assert.ok(interfaceIndex("lo") > 0, "lo has an index");
  assert.equal(interfaceIndex("cc-no-such-if"), 0);
  const fd = socket(1, 2, 0); // AF_UNIX, SOCK_DGRAM
  try {
    const type = new Int32Array(1);
    const SOL_SOCKET = 1;
    const SO_TYPE = 3;
    const SO_RCVBUF = 8;
    const len = getsockopt(fd, {
      level: SOL_SOCKET,
      name: SO_TYPE,
      value: new Uint8Array(type.buffer),
    });
    assert.deepEqual([len, type[0]], [4, 2]);
    setsockopt(fd, { level: SOL_SOCKET, name: SO_RCVBUF, value: 65536 });
    const rcvbuf = new Int32Array(1);
    getsockopt(fd, { level: SOL_SOCKET, name: SO_RCVBUF, value: new Uint8Array(rcvbuf.buffer) });
    assert.equal(rcvbuf[0], 2 * 65536, "the kernel doubles SO_RCVBUF");
    assert.equal(pollEvents(fd, 0), 0, "nothing to read, no error");
  } finally {
    closeFd(fd);
  }
  assert.throws(
    () => mapShared(-1, 4096),
    (err: unknown) =>
      err instanceof LibcError && err.errno === 9 && /Bad file descriptor/.test(err.message),
  );
  assert.throws(
    () => socket(12345, 3, 0),
    (err: unknown) => err instanceof LibcError && err.errno === 97, // EAFNOSUPPORT
  );
});

Deno.test("Deno.dlopen is called only in ffi/, and libc.so.6 is opened in one place", () => {
  const root = new URL("..", import.meta.url).pathname;
  const calls: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of Deno.readDirSync(`${root}${dir}`)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (path.endsWith(".ts")) {
        const text = Deno.readTextFileSync(`${root}${path}`);
        for (const m of text.matchAll(/Deno\.dlopen\(\s*("[^"]*"|\w+)/g)) {
          calls.push(`${path} ${m[1]}`);
        }
      }
    }
  };
  walk("src");
  walk("ffi");
  walk("bench");
  assert.deepEqual(calls.filter((c) => !c.startsWith("ffi/")), []);
  assert.deepEqual(calls.filter((c) => c.includes("libc")), ['ffi/libc.ts "libc.so.6"']);
});
