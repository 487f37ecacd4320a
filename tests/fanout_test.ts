// src/capture/fanout.ts argument checks and errno reporting (joining a real group is in
// capture_live_test.ts, which needs root).
import assert from "node:assert/strict";
import { joinFanout } from "../src/capture/fanout.ts";
import { openFd } from "./support/files.ts";

Deno.test("joinFanout rejects bad group ids and reports errno for a non-socket", () => {
  assert.throws(
    () => joinFanout(3, 70000),
    /^Error: Invalid fanout group 70000: expected 0-65535$/,
  );
  assert.throws(() => joinFanout(-1, 1), /^Error: Invalid capture socket -1 for fanout/);
  const file = Deno.openSync("/etc/hostname");
  try {
    const fd = openFd("/etc/hostname");
    assert.ok(fd !== undefined);
    assert.throws(
      () => joinFanout(fd, 42),
      new RegExp(`^Error: Cannot join fanout group 42 on fd ${fd}: Socket operation on non-socket`),
    );
  } finally {
    file.close();
  }
});
