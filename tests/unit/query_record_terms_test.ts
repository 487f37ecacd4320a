/**
 * Parsing of the record terms (Community ID, cut, totals, L2) in both dialects: the trees they
 * give, formatQuery round trips, and the messages for mistakes.
 */
import assert from "node:assert/strict";
import { parseQuery, QueryError } from "../../src/query/parse.ts";
import { formatQuery } from "../../src/query/ast.ts";

const CID = "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=";

Deno.test("record terms: trees of both dialects", () => {
  const cid = parseQuery(`community-id ${CID}`, { communityIdSeed: 9 });
  assert.equal(cid.type, "cid");
  if (cid.type === "cid") {
    assert.equal(cid.seed, 9);
    assert.equal(cid.digest.length, 20);
  }
  assert.deepEqual(parseQuery(`cid=${CID}`, { communityIdSeed: 9 }), cid);
  assert.deepEqual(parseQuery("cut"), { type: "cut", cut: true });
  assert.deepEqual(parseQuery("cut=1"), { type: "cut", cut: true });
  assert.deepEqual(parseQuery("cut=0"), { type: "cut", cut: false });
  assert.deepEqual(parseQuery("bytes > 10MB"), {
    type: "total",
    what: "bytes",
    op: ">",
    value: 10_000_000,
  });
  assert.deepEqual(parseQuery("bytes >= 64KiB"), {
    type: "total",
    what: "bytes",
    op: ">=",
    value: 65536,
  });
  assert.deepEqual(parseQuery("packets < 1000"), {
    type: "total",
    what: "packets",
    op: "<",
    value: 1000,
  });
  assert.deepEqual(parseQuery("ether host 00:1B:21:3c:4d:5e"), {
    type: "mac",
    words: [0x001b213c, 0x4d5e0000],
    dir: "any",
  });
  assert.deepEqual(parseQuery("mac=00-1b-21-3c-4d-5e"), parseQuery("ether host 00:1b:21:3c:4d:5e"));
  assert.equal((parseQuery("ether src 00:1b:21:3c:4d:5e") as { dir: string }).dir, "src");
  assert.deepEqual(parseQuery("arp"), { type: "ethertype", etherType: 0x0806 });
  assert.deepEqual(parseQuery("ether proto 2054"), parseQuery("arp"));
  assert.deepEqual(parseQuery("ethertype=0x88cc"), parseQuery("lldp"));
  assert.deepEqual(parseQuery("stp"), { type: "ethertype", etherType: 0x4242 });
  assert.deepEqual(parseQuery("ether proto ip"), { type: "family", family: 4 });
  assert.deepEqual(parseQuery("ether proto 0x86dd"), { type: "family", family: 6 });
  // Mixed with other terms, and the base64 padding glued back in a classic union.
  const q = parseQuery(`cid=${CID}|cut tcp`);
  assert.equal(q.type, "and");
});

Deno.test("record terms: formatQuery reads back to the same tree", () => {
  for (
    const text of [
      `community-id ${CID}`,
      "cut",
      "cut=0",
      "bytes > 10MB",
      "packets <= 5",
      "ether src 00:1b:21:3c:4d:5e",
      "ether dst ff:ff:ff:ff:ff:ff",
      "ether host 00:1b:21:3c:4d:5e and rarp",
      "stp or lldp",
    ]
  ) {
    const q = parseQuery(text, { communityIdSeed: 3 });
    assert.deepEqual(parseQuery(formatQuery(q), { communityIdSeed: 3 }), q, text);
  }
});

Deno.test("record terms: mistakes name the position and what was expected", () => {
  const cases: [string, RegExp][] = [
    ["community-id 1:abc", /^Invalid Community ID "1:abc" at position 13: expected a Community ID/],
    ["cid=2:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=", /^Invalid Community ID "2:.*" at position 4/],
    ["community-id", /^Missing a Community ID .* after "community-id" at position 12/],
    ["cut=2", /^Invalid cut value "2" at position 4: expected 1 \(cut off\) or 0 \(not\)$/],
    ["bytes 10MB", /^Invalid comparison "10MB" at position 6: expected >, >=, < or <=/],
    ["bytes > ten", /^Invalid bytes "ten" at position 8: expected bytes or a size/],
    ["packets > 1.5", /^Invalid packets "1.5" at position 10: expected a whole number$/],
    ["ether", /^Missing host, src, dst or proto after "ether" at position 5/],
    ["ether proto pup", /^Invalid EtherType "pup" at position 12: expected 0-65535/],
    ["mac=zz:00:00:00:00:00", /^Invalid MAC address "zz:00:00:00:00:00" at position 4/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseQuery(text), (e: unknown) => {
      assert.ok(e instanceof QueryError, text);
      assert.match(e.message, message, text);
      return true;
    });
  }
});
