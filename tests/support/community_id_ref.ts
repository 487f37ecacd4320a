/**
 * Community ID v1 written from the spec's pseudo code (../shared/community-id/SPEC.md) with
 * node:crypto's SHA-1, sharing nothing with src/: the tests' oracle for cutcap's IDs.
 */
import { createHash } from "node:crypto";

const ICMP4_COUNTER: Record<number, number> = {
  8: 0,
  0: 8,
  13: 14,
  14: 13,
  15: 16,
  16: 15,
  10: 9,
  9: 10,
  17: 18,
  18: 17,
};
const ICMP6_COUNTER: Record<number, number> = {
  128: 129,
  129: 128,
  130: 131,
  131: 130,
  133: 134,
  134: 133,
  135: 136,
  136: 135,
  139: 140,
  140: 139,
  144: 145,
  145: 144,
};

function addrBytes(a: string): number[] {
  if (!a.includes(":")) return a.split(".").map(Number);
  const [head, tail] = a.split("::");
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t].map((g) =>
    parseInt(g, 16)
  );
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

function lessThan(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

/** community_id_v1 / community_id_icmp of the spec, from one packet's tuple. */
export function referenceId(
  seed: number,
  saddr: string,
  daddr: string,
  proto: number,
  sport: number,
  dport: number,
): string {
  let s = addrBytes(saddr);
  let d = addrBytes(daddr);
  let oneWay = false;
  if (proto === 1 || proto === 58) {
    const counter = (proto === 1 ? ICMP4_COUNTER : ICMP6_COUNTER)[sport];
    if (counter === undefined) oneWay = true;
    else dport = counter;
  }
  const ported = [1, 6, 17, 58, 132].includes(proto);
  const swap = !oneWay &&
    (lessThan(d, s) || (s.every((x, i) => x === d[i]) && ported && dport < sport));
  if (swap) [s, d, sport, dport] = [d, s, dport, sport];
  const bytes = [seed >> 8, seed & 0xff, ...s, ...d, proto, 0];
  if (ported) bytes.push(sport >> 8, sport & 0xff, dport >> 8, dport & 0xff);
  return "1:" + createHash("sha1").update(Uint8Array.from(bytes)).digest("base64");
}
