// ffi/aio.ts against the file's bytes: a block written asynchronously lands at its offset, and
// errors come back as Deno words them.
import assert from "node:assert/strict";
import { AsyncWrite, findDescriptor } from "../ffi/aio.ts";

Deno.test("AsyncWrite: blocks land at their offsets; a bad descriptor is an error", () => {
  const aio = AsyncWrite.create();
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
    assert.throws(() => aio.finish(), /No asynchronous write in flight/);
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
