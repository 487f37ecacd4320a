// src/capture/afpacket.ts: the ring's layout (no root), and on a veth in a namespace (root): VLAN
// tags put back exactly as libpcap puts them (a libpcap handle on the same interface is the oracle),
// the kernel's drop counter against the packets the ring really held, the interface going down and
// away, and clear messages for what cannot be opened.
import assert from "node:assert/strict";
import { PcapHandle } from "../ffi/libpcap.ts";
import { type CaptureSource, PacketRing, ringLayout } from "../src/capture/mod.ts";
import { drain, ip, ipv4Frame, udp, writePcap } from "./support/live_frames.ts";
import { rootTest } from "./support/netns.ts";
import { sh } from "./support/process.ts";
import { rootOnly } from "./support/root.ts";

const MiB = 1 << 20;

Deno.test("ringLayout: blocks hold a snaplen packet, grow to 1 MiB while 8 remain and to 4 MiB while 64 do, cover the buffer", () => {
  assert.deepEqual(ringLayout(64 * MiB, 262144), { blockSize: MiB, blocks: 64 });
  assert.deepEqual(ringLayout(4 * MiB, 262144), { blockSize: MiB / 2, blocks: 8 });
  assert.deepEqual(ringLayout(64 * MiB, 1500), { blockSize: MiB, blocks: 64 });
  assert.deepEqual(ringLayout(128 * MiB, 1500), { blockSize: 2 * MiB, blocks: 64 });
  assert.deepEqual(ringLayout(256 * MiB, 1500), { blockSize: 4 * MiB, blocks: 64 });
  assert.deepEqual(ringLayout(1024 * MiB, 1500), { blockSize: 4 * MiB, blocks: 256 });
  assert.deepEqual(ringLayout(16 * MiB, 1500), { blockSize: MiB, blocks: 16 });
  assert.deepEqual(ringLayout(3 * MiB, 1500), { blockSize: MiB / 4, blocks: 12 });
  // Too small a buffer: two blocks of the smallest size that holds a packet.
  assert.deepEqual(ringLayout(1, 1500), { blockSize: 4096, blocks: 2 });
  assert.deepEqual(ringLayout(1, 262144), { blockSize: MiB / 2, blocks: 2 });
  // Immediate mode: the smallest blocks, as many as fit.
  assert.deepEqual(ringLayout(4 * MiB, 9100, true), { blockSize: 16384, blocks: 256 });
});

/** A frame with `tags` (TPID, TCI) inserted after the MAC addresses. */
function tagged(frame: Uint8Array, tags: [number, number][]): Uint8Array {
  const out = new Uint8Array(frame.length + 4 * tags.length);
  out.set(frame.subarray(0, 12));
  const dv = new DataView(out.buffer);
  tags.forEach(([tpid, tci], i) => {
    dv.setUint16(12 + 4 * i, tpid);
    dv.setUint16(14 + 4 * i, tci);
  });
  out.set(frame.subarray(12), 12 + 4 * tags.length);
  return out;
}

/** What one packet looked like to a capture source. */
interface Seen {
  ts: string;
  caplen: number;
  wireLen: number;
  bytes: Uint8Array;
}

function collect(sources: CaptureSource[]): Seen[][] {
  const seen: Seen[][] = sources.map(() => []);
  drain(sources, (which, p) => {
    p.settle(); // where the worker's writer reads stored packets from
    seen[which].push({
      ts: `${p.tsSec}.${p.tsFrac}`,
      caplen: p.caplen,
      wireLen: p.wireLen,
      bytes: p.data.slice(p.offset, p.offset + p.caplen),
    });
  });
  return seen;
}

rootTest(
  "afpacket: VLAN tags go back into the frame as libpcap puts them, snaplen applied after",
  async ({ dir, veth }) => {
    const plain = (n: number, size: number) => ipv4Frame(ip(1), ip(2 + n), udp(4000 + n, 53, size));
    const frames = [
      tagged(plain(0, 100), [[0x8100, 0xa064]]), // VLAN 100, priority 5
      tagged(plain(1, 100), [[0x88a8, 200], [0x8100, 300]]), // 802.1ad outer, 802.1Q inner
      tagged(plain(2, 100), [[0x8100, 0x6000]]), // priority tag: VLAN 0, priority 3
      tagged(plain(3, 100), [[0x8100, 0]]), // VLAN 0, priority 0: the TCI is 0
      plain(4, 100), // untagged
      tagged(plain(5, 1400), [[0x8100, 42]]), // longer than the snaplen once tagged
      plain(6, 1400),
    ];
    writePcap(`${dir}/vlan.pcap`, frames);
    const snaplen = 200;
    const opts = { snaplen, bufferSize: 4 * MiB, timeoutMs: 50 };
    const ring = PacketRing.open(veth!.outside, opts);
    const libpcap = PcapHandle.openLive(veth!.outside, opts);
    try {
      await veth!.replay(`${dir}/vlan.pcap`);
      const [got, oracle] = collect([ring, libpcap]);
      assert.equal(got.length, frames.length, "every frame captured");
      got.forEach((g, i) => {
        assert.deepEqual(g, oracle[i], `frame ${i}: as libpcap hands it over`);
        assert.equal(g.wireLen, frames[i].length, `frame ${i}: wire length with its tags`);
        assert.equal(g.caplen, Math.min(snaplen, frames[i].length), `frame ${i}: caplen`);
        assert.deepEqual(g.bytes, frames[i].subarray(0, g.caplen), `frame ${i}: bytes as sent`);
      });
    } finally {
      ring.close();
      libpcap.close();
    }
  },
  { veth: "av" },
);

rootTest(
  "afpacket: the drop counter is the packets sent that the ring could not hold",
  async ({ dir, veth }) => {
    const frames = Array.from({ length: 400 }, (_, i) => ipv4Frame(ip(1), ip(2), udp(i, 9, 600)));
    writePcap(`${dir}/burst.pcap`, frames);
    // Two 4 KiB blocks: a few packets each. Nothing is read while the burst arrives.
    const ring = PacketRing.open(veth!.outside, { snaplen: 1500, bufferSize: 1, timeoutMs: 50 });
    try {
      assert.deepEqual(ring.layout(), { blockSize: 4096, blocks: 2 });
      const sent = await veth!.replay(`${dir}/burst.pcap`);
      assert.equal(sent, frames.length);
      const [got] = collect([ring]);
      const stats = ring.stats();
      assert.ok(got.length > 0 && got.length < 20, `the ring held ${got.length} packets`);
      assert.deepEqual(stats, { recv: sent, drop: sent - got.length, ifdrop: 0 });
      got.forEach((g, i) => assert.deepEqual(g.bytes, frames[i], `packet ${i} is frame ${i}`));
    } finally {
      ring.close();
    }
  },
  { veth: "ad" },
);

rootTest(
  "afpacket: down and up keeps capturing; deleted is 'The interface disappeared'",
  async ({ dir, veth }) => {
    const frames = Array.from({ length: 20 }, (_, i) => ipv4Frame(ip(1), ip(2), udp(i, 9, 60)));
    writePcap(`${dir}/few.pcap`, frames);
    const ring = PacketRing.open(veth!.outside, { timeoutMs: 20 });
    try {
      await sh("ip", ["link", "set", veth!.outside, "down"]);
      for (let i = 0; i < 20; i++) assert.equal(ring.next(), 0, "down: nothing yet, no error");
      await sh("ip", ["link", "set", veth!.outside, "up"]);
      await veth!.exec("ip", ["link", "set", veth!.inside, "up"]);
      await veth!.replay(`${dir}/few.pcap`);
      assert.equal(collect([ring])[0].length, frames.length, "packets after down and up");
      await sh("ip", ["link", "del", veth!.outside]);
      let rc = 0;
      for (let i = 0; i < 100 && rc === 0; i++) rc = ring.next();
      assert.equal(rc, -1);
      assert.equal(ring.lastError(), "The interface disappeared");
    } finally {
      ring.close();
    }
  },
  { veth: "ag" },
);

Deno.test(rootOnly("opening an AF_PACKET socket", {
  name: "afpacket: what cannot be opened gets one clear line, as with libpcap",
  async fn() {
    assert.throws(
      () => PacketRing.open("eth9cc"),
      (err: Error) => err.message === "Interface eth9cc not found (cutcap interfaces lists them)",
    );
    assert.throws(
      () => PacketRing.open("lo", { timeoutMs: 0 }),
      (err: Error) =>
        err.message === "Invalid capture timeout 0 ms: expected an integer of 1 or more",
    );
    // The filter is libpcap's: the same complaint, word for word.
    const libpcapError = (() => {
      try {
        PcapHandle.openLive("lo", { bufferSize: 1 }).setFilter("port 99999");
      } catch (err) {
        return (err as Error).message;
      }
    })();
    assert.match(libpcapError ?? "", /^Bad BPF filter "port 99999": /);
    assert.throws(
      () => PacketRing.open("lo", { filter: "port 99999" }),
      (err: Error) => err.message === libpcapError,
    );
    // A down interface binds, with ENETDOWN pending: refused as libpcap refuses it.
    const down = `ccdn${Deno.pid}`.slice(0, 13);
    await sh("ip", ["link", "add", down, "type", "veth", "peer", "name", `${down}p`]);
    try {
      assert.throws(
        () => PacketRing.open(down),
        (err: Error) =>
          err.message === `Interface ${down} is down: bring it up first (ip link set ${down} up)`,
      );
    } finally {
      await sh("ip", ["link", "del", down]);
    }
    // A tun device has no Ethernet header: the afpacket method says so and names the way out.
    const tun = `cctun${Deno.pid}`.slice(0, 15);
    await sh("ip", ["tuntap", "add", "dev", tun, "mode", "tun"]);
    try {
      await sh("ip", ["link", "set", tun, "up"]);
      assert.throws(
        () => PacketRing.open(tun),
        (err: Error) =>
          err.message ===
            `Cannot capture on ${tun} with --capture-method afpacket: hardware type 65534 is ` +
              "not Ethernet; use --capture-method libpcap",
      );
    } finally {
      await sh("ip", ["link", "del", tun]);
    }
  },
}));
