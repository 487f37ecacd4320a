// Live capture through both methods (libpcap, the AF_PACKET ring), PACKET_FANOUT, and activation
// errors. Needs root.
//
// Setup (tests/support/netns.ts; a process can only capture on interfaces of its own network
// namespace): a namespace holds one veth end; the peer stays in the test's (root) namespace without
// any address and with IPv6 disabled, so nothing but our traffic crosses it. Traffic is a pcap
// written by the test and sent with tcpreplay from inside the namespace; every frame arrives on the
// outside end, where the test captures. Flows go both ways inside that file (addresses swapped),
// which is what the fanout flow-hash test needs.
import assert from "node:assert/strict";
import { PcapHandle } from "../ffi/libpcap.ts";
import { type CaptureMethod, joinFanout, openSource } from "../src/capture/mod.ts";
import { openFdTargets } from "./support/files.ts";
import { drain, ip, ipv4Frame, udp, writePcap } from "./support/live_frames.ts";
import { createVeth, rootTest, type Veth } from "./support/netns.ts";
import { rootOnly } from "./support/root.ts";
import { sh } from "./support/process.ts";

const FILTER = "net 198.18.0.0/15";
const METHODS: CaptureMethod[] = ["libpcap", "afpacket"];

/** Runs `body` with a namespace and veth pair in place (tests/support/netns.ts); removed afterwards. */
function liveTest(name: string, body: (dir: string, veth: Veth) => Promise<void>): void {
  rootTest(name, ({ dir, veth }) => body(dir, veth!), { veth: "cl" });
}

/** Flow key independent of direction: the two endpoints in sorted order. */
function flowKey(f: Uint8Array, offset: number): string {
  const dv = new DataView(f.buffer, f.byteOffset + offset);
  const a = `${dv.getUint32(26)}:${dv.getUint16(34)}`;
  const b = `${dv.getUint32(30)}:${dv.getUint16(36)}`;
  return a < b ? `${a}-${b}` : `${b}-${a}`;
}

// TPACKET_V3 (the default, blocks of packets) and immediate mode (libpcap: TPACKET_V2, one ring
// frame per packet, sized from the snaplen, so the snaplen here keeps 200 frames in 4 MiB; the
// afpacket ring: blocks retired after 1 ms).
for (const method of METHODS) {
  for (const immediate of [false, true]) {
    const mode = immediate ? "immediate mode" : "block mode";
    liveTest(
      `live, ${method} (${mode}): replayed packets arrive with their bytes, stats count them`,
      async (dir, veth) => {
        const frames: Uint8Array[] = [];
        for (let i = 0; i < 200; i++) {
          frames.push(ipv4Frame(ip(1), ip(2), udp(1000 + (i % 7), 53, 20 + i * 30)));
        }
        writePcap(`${dir}/one.pcap`, frames);
        const h = openSource({
          device: veth.outside,
          method,
          filter: FILTER,
          immediate,
          snaplen: immediate ? 9100 : 262144,
          timeoutMs: 100,
          bufferSize: 4 << 20,
          nanosecond: true,
        });
        try {
          assert.equal(h.warning, "");
          assert.equal(h.linkType(), 1);
          assert.ok(h.selectableFd() >= 0);
          await veth.replay(`${dir}/one.pcap`);
          const got: Uint8Array[] = [];
          let maxFrac = 0;
          const now = Date.now() / 1000;
          drain([h], (_, p) => {
            got.push(p.data.slice(p.offset, p.offset + p.caplen));
            assert.equal(p.wireLen, p.caplen);
            assert.ok(Math.abs(p.tsSec - now) < 60, `timestamp ${p.tsSec} near ${now}`);
            maxFrac = Math.max(maxFrac, p.tsFrac);
          });
          assert.deepEqual(h.stats(), { recv: frames.length, drop: 0, ifdrop: 0 });
          assert.equal(got.length, frames.length);
          got.forEach((g, i) => assert.deepEqual(g, frames[i], `frame ${i}`));
          assert.ok(maxFrac < 1e9 && maxFrac >= 1e6, `nanosecond fraction ${maxFrac}`);
        } finally {
          h.close();
        }
      },
    );
  }
}

for (const method of METHODS) {
  liveTest(
    `live, ${method}: two handles in one fanout group split flows, each flow in one handle`,
    async (dir, veth) => {
      const frames: Uint8Array[] = [];
      const flows = 32;
      for (let round = 0; round < 6; round++) {
        for (let f = 0; f < flows; f++) {
          const a = ip(10 + f);
          const b = ip(256 + 20 + (f % 3));
          const ap = 20000 + f * 11;
          const bp = 80 + (f % 5);
          // Both directions of every flow.
          frames.push(ipv4Frame(a, b, udp(ap, bp, 40 + round), { id: round * 100 + f }));
          frames.push(ipv4Frame(b, a, udp(bp, ap, 60 + round), { id: round * 100 + f + 50 }));
        }
      }
      writePcap(`${dir}/flows.pcap`, frames);
      const group = 1 + Math.floor(Math.random() * 0xfffe);
      const opts = {
        device: veth.outside,
        method,
        filter: FILTER,
        timeoutMs: 100,
        bufferSize: 4 << 20,
        fanoutGroup: group,
      };
      const h0 = openSource(opts);
      const h1 = openSource(opts);
      try {
        assert.throws(
          () => joinFanout(h0.selectableFd(), group),
          /^Error: Cannot join fanout group \d+ on fd \d+: .*already belongs to a fanout group$/,
        );
        await veth.replay(`${dir}/flows.pcap`);
        const owner = new Map<string, Set<number>>();
        const counts = [0, 0];
        drain([h0, h1], (which, p) => {
          counts[which]++;
          const key = flowKey(p.data, p.offset);
          const set = owner.get(key) ?? new Set<number>();
          set.add(which);
          owner.set(key, set);
        });
        assert.equal(counts[0] + counts[1], frames.length, `per handle ${counts}`);
        assert.ok(counts[0] > 0 && counts[1] > 0, `both handles get packets: ${counts}`);
        assert.equal(owner.size, flows);
        for (const [key, set] of owner) {
          assert.equal(set.size, 1, `flow ${key} split across handles`);
        }
        assert.equal(h0.stats().recv + h1.stats().recv, frames.length);
      } finally {
        h0.close();
        h1.close();
      }
    },
  );

  liveTest(
    `live, ${method}: fanout hands over IPv4 fragments as they were on the wire (no DEFRAG)`,
    async (dir, veth) => {
      // With PACKET_FANOUT_FLAG_DEFRAG the kernel would reassemble the datagram (net/packet/af_packet.c,
      // packet_rcv_fanout); cutcap joins without it, so the archive holds the two fragments.
      const payload = udp(4000, 5000, 2992); // 3000-byte UDP datagram
      const first = ipv4Frame(ip(1), ip(2), payload.subarray(0, 1480), {
        id: 777,
        moreFragments: true,
      });
      const second = ipv4Frame(ip(1), ip(2), payload.subarray(1480), { id: 777, fragOffset: 1480 });
      writePcap(`${dir}/frag.pcap`, [first, second]);
      const h = openSource({
        device: veth.outside,
        method,
        filter: FILTER,
        immediate: true,
        timeoutMs: 100,
        bufferSize: 4 << 20,
        fanoutGroup: 1 + Math.floor(Math.random() * 0xfffe),
      });
      try {
        await veth.replay(`${dir}/frag.pcap`);
        const lens: number[] = [];
        drain([h], (_, p) => lens.push(p.caplen));
        assert.deepEqual(lens, [14 + 20 + 1480, 14 + 20 + payload.length - 1480]);
      } finally {
        h.close();
      }
    },
  );
}

Deno.test(rootOnly("opening a live interface", {
  name: "live: a missing interface gives one clear line",
  fn() {
    assert.throws(
      () => PcapHandle.openLive("eth9cc"),
      (err: Error) => err.message === "Interface eth9cc not found (cutcap interfaces lists them)",
    );
  },
}));

Deno.test(rootOnly("starting an unprivileged child with setpriv", {
  name: "live, both methods: without privileges the message names root and the capabilities",
  sanitizeResources: false,
  async fn() {
    // Run as root, the test drops to nobody in a child (setpriv) instead of skipping the case.
    const denoDir = await Deno.makeTempDir({ prefix: "cc-nobody-" });
    try {
      await Deno.chown(denoDir, 65534, 65534);
      const libpcap = new URL("../ffi/libpcap.ts", import.meta.url).href;
      const afpacket = new URL("../src/capture/afpacket.ts", import.meta.url).href;
      const code = `import { PcapHandle } from "${libpcap}";
        import { PacketRing } from "${afpacket}";
        for (const open of [() => PcapHandle.openLive("lo"), () => PacketRing.open("lo")]) {
          try { open(); console.log("opened"); }
          catch (e) { console.log((e as Error).message); }
        }`;
      const out = await sh("setpriv", [
        ...["--reuid=65534", "--regid=65534", "--clear-groups", "env", `DENO_DIR=${denoDir}`],
        ...[`HOME=${denoDir}`, Deno.execPath(), "eval", "--ext=ts", code],
      ]);
      const message = "Capturing on lo needs root or CAP_NET_RAW and CAP_NET_ADMIN";
      assert.equal(out.trim(), `${message}\n${message}`, "libpcap, then afpacket");
    } finally {
      await Deno.remove(denoDir, { recursive: true });
    }
  },
}));

/**
 * Packet sockets bound to `iface` (/proc/net/packet, by interface index) that this process holds a
 * descriptor of (/proc/self/fd): an open capture handle on it is one, a closed one is none. A
 * child another test spawns meanwhile may inherit the socket and keep it alive after our close
 * (libpcap does not open it close-on-exec), so sockets alone would not tell.
 */
function packetSockets(iface: string): number {
  const ifindex = Deno.readTextFileSync(`/sys/class/net/${iface}/ifindex`).trim();
  const bound = new Set(
    Deno.readTextFileSync("/proc/net/packet").trim().split("\n").slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((cols) => cols[4] === ifindex).map((cols) => cols[8]),
  );
  let held = 0;
  for (const target of openFdTargets().values()) {
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined && bound.has(inode)) held++;
  }
  return held;
}

for (const method of METHODS) {
  liveTest(
    `live, ${method}: openSource closes the handle when the fanout join or the filter fails`,
    async (_dir, veth) => {
      // A group's sockets must all be bound to one interface: joining it on another fails (EINVAL),
      // after the source was opened and bound there.
      const other = await createVeth("cl");
      const group = 1 + Math.floor(Math.random() * 0xfffe);
      const base = { method, timeoutMs: 100, bufferSize: 4 << 20 };
      const member = openSource({ ...base, device: veth.outside, fanoutGroup: group });
      try {
        const opened = openSource({ ...base, device: other.outside });
        assert.equal(packetSockets(other.outside), 1, "an open handle is seen");
        opened.close();
        assert.equal(packetSockets(other.outside), 0, "a closed handle is not");
        for (let attempt = 0; attempt < 3; attempt++) {
          assert.throws(
            () => openSource({ ...base, device: other.outside, fanoutGroup: group }),
            /^Error: Cannot join fanout group \d+ on fd \d+: Invalid argument \(errno 22\); the group exists with another mode or interface/,
          );
          assert.equal(packetSockets(other.outside), 0, "the handle that failed to join is closed");
        }
        // libpcap's filter is set on the open handle (the ring compiles its own before it binds).
        if (method === "libpcap") {
          assert.throws(
            () => openSource({ ...base, device: other.outside, filter: "port 99999" }),
            /^Error: Bad BPF filter "port 99999": /,
          );
          assert.equal(packetSockets(other.outside), 0, "the handle with a bad filter is closed");
        }
      } finally {
        member.close();
        await other.remove();
      }
    },
  );
}
