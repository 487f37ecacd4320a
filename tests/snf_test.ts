// src/capture/snf.ts: the SNF ring count from the environment.
import assert from "node:assert/strict";
import { snfRingCount } from "../src/capture/snf.ts";

Deno.test("snfRingCount reads SNF_NUM_RINGS", () => {
  const saved = Deno.env.get("SNF_NUM_RINGS");
  try {
    Deno.env.delete("SNF_NUM_RINGS");
    assert.equal(snfRingCount(), undefined);
    Deno.env.set("SNF_NUM_RINGS", "4");
    assert.equal(snfRingCount(), 4);
    Deno.env.set("SNF_NUM_RINGS", "four");
    assert.throws(
      () => snfRingCount(),
      /^Error: Invalid SNF_NUM_RINGS "four": expected an integer/,
    );
    Deno.env.set("SNF_NUM_RINGS", "0");
    assert.throws(() => snfRingCount(), /^Error: Invalid SNF_NUM_RINGS "0"/);
  } finally {
    if (saved === undefined) Deno.env.delete("SNF_NUM_RINGS");
    else Deno.env.set("SNF_NUM_RINGS", saved);
  }
});
