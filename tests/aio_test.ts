// ffi/aio.ts against the file's bytes: a block written asynchronously lands at its offset, and
// errors come back as Deno words them.
import assert from "node:assert/strict";
import { AsyncIo, findDescriptor } from "../ffi/aio.ts";

Deno.test("AsyncIo: blocks land at their offsets; a bad descriptor is an error", () => {
  const aio = AsyncIo.create();
  assert.ok(aio !== null, "AIO is available on x86_64 glibc Linux with FFI");
  const dir = Deno.makeTempDirSync({ prefix: "cc-aio-" });
  const path = `${dir}/out.bin`;
  const file = Deno.openSync(path, { write: true, createNew: true });
  try {
    const fd = findDescriptor(path);
    assert.ok(fd >= 0);
    const a = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
    aio.startWrite(fd, a, a.length, 0);
    assert.equal(aio.busy, true);
    assert.equal(aio.finish(), a.length);
    const b = new Uint8Array(1000).fill(0xab);
    aio.startWrite(fd, b.subarray(100), 500, a.length); // a view: its own first byte is written
    assert.equal(aio.finish(), 500);
    const back = Deno.readFileSync(path);
    assert.equal(back.length, a.length + 500);
    assert.deepEqual(back.subarray(0, a.length), a);
    assert.ok(back.subarray(a.length).every((x) => x === 0xab));
    assert.throws(() => aio.finish(), /No asynchronous read or write in flight/);
    assert.throws(() => {
      aio.startWrite(1_000_000, b, 10, 0);
      aio.finish();
    }, /Bad file descriptor \(os error 9\)/);
    assert.equal(aio.busy, false);
  } finally {
    file.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("AsyncIo: a read returns the file's bytes at an offset, short at the end", () => {
  const aio = AsyncIo.create();
  assert.ok(aio !== null);
  const dir = Deno.makeTempDirSync({ prefix: "cc-aio-" });
  const path = `${dir}/in.bin`;
  const data = new Uint8Array(100_000).map((_, i) => (i * 31) & 0xff);
  Deno.writeFileSync(path, data);
  const file = Deno.openSync(path, { read: true });
  try {
    const fd = findDescriptor(path);
    const into = new Uint8Array(70_000);
    aio.startRead(fd, into, into.length, 1000);
    assert.equal(aio.finish(), 70_000);
    assert.deepEqual(into, data.subarray(1000, 71_000));
    aio.startRead(fd, into.subarray(5), 60_000, 71_000);
    assert.equal(aio.finish(), 29_000, "short: the file ends");
    assert.deepEqual(into.subarray(5, 29_005), data.subarray(71_000));
    aio.startRead(fd, into, 10, 200_000);
    assert.equal(aio.finish(), 0, "past the end");
  } finally {
    file.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
