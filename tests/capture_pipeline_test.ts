/**
 * The capture pipeline (src/worker/pipeline.ts) on hand-made frames, without a worker: what it stores
 * under a byte cutoff (tcpdump reads the file back), the counters it keeps, large-flow reports, the
 * rotation that bounds a file's distinct flows, and a link-type change.
 */
import assert from "node:assert/strict";
import { indexPathFor } from "../src/archive/naming.ts";
import { readFileIndex } from "../src/index/index_reader.ts";
import type { KeyDescription } from "../src/packet/describe.ts";
import type { FinalizedFile } from "../src/store/pcap_file_writer.ts";
import { Counter, COUNTER_SLOTS } from "../src/worker/counters.ts";
import { CapturePipeline, type PacketView } from "../src/worker/pipeline.ts";
import { ip, ipv4Frame, udp } from "./support/live_frames.ts";
import { tcpdumpPackets } from "./support/oracle.ts";

/** One frame at a time, as a capture source hands it over. */
class Frames implements PacketView {
  data: Uint8Array = new Uint8Array(0);
  offset = 0;
  caplen = 0;
  wireLen = 0;
  tsSec = 0;
  tsFrac = 0;
  readonly nanosecond = false;

  settle(): void {}

  /** Makes `frame` the current packet, `tsSec` seconds into 2026; wireLen defaults to its length. */
  set(frame: Uint8Array, tsSec: number, wireLen = frame.length): this {
    this.data = frame;
    this.caplen = frame.length;
    this.wireLen = wireLen;
    this.tsSec = 1_767_225_600 + tsSec;
    this.tsFrac = 250_000;
    return this;
  }
}

interface Run {
  pipeline: CapturePipeline;
  counters: Float64Array;
  files: FinalizedFile[];
  reports: { flow: KeyDescription; bytes: number; threshold: number }[];
}

function pipelineIn(
  outDir: string,
  options: { byteCutoff?: number; maxFlows?: number; largeFlowThreshold?: number } = {},
): Run {
  const counters = new Float64Array(COUNTER_SLOTS);
  const files: FinalizedFile[] = [];
  const reports: Run["reports"] = [];
  const pipeline = new CapturePipeline({
    maxFlows: options.maxFlows ?? 1024,
    flowTimeout: 300,
    byteCutoff: options.byteCutoff ?? 0,
    packetCutoff: 0,
    largeFlowThreshold: options.largeFlowThreshold ?? 0,
    onLargeFlow: (flow, bytes, threshold) => reports.push({ flow, bytes, threshold }),
    live: false,
    counters,
    output: {
      outDir,
      iface: "test",
      worker: 0,
      linkType: 1,
      snaplen: 262144,
      onFinalized: (file) => files.push(file),
    },
  });
  return { pipeline, counters, files, reports };
}

function hex(frame: Uint8Array): string {
  return [...frame].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("pipeline: a byte cutoff stores each flow's packets up to the crossing one; counters and file agree", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-pipeline-" });
  try {
    const { pipeline, counters, files } = pipelineIn(dir, { byteCutoff: 500 });
    const source = new Frames();
    const expected: string[] = [];
    const before = new Map<number, number>();
    let bytes = 0;
    for (let i = 0; i < 30; i++) {
      const flow = i % 3;
      const frame = ipv4Frame(ip(1), ip(2 + flow), udp(4000 + flow, 53, 120)); // 162 bytes
      // Stored while the flow had seen less than the cutoff before this packet.
      if ((before.get(flow) ?? 0) < 500) expected.push(hex(frame));
      before.set(flow, (before.get(flow) ?? 0) + frame.length);
      bytes += frame.length;
      pipeline.handle(source.set(frame, i));
    }
    // A record that claims a wire length below what was captured: kept as read (tcpdump prints
    // no bytes for it), and counted.
    pipeline.handle(source.set(ipv4Frame(ip(9), ip(10), udp(1, 2, 20)), 40, 30));
    bytes += 30;
    pipeline.close();

    assert.equal(expected.length, 4 * 3);
    assert.equal(pipeline.packetsSeen, 31);
    assert.equal(counters[Counter.BytesSeen], bytes);
    assert.equal(counters[Counter.PacketsWritten], 13);
    assert.equal(counters[Counter.BytesWritten], 12 * 162 + 30);
    assert.equal(counters[Counter.CaplenOverLen], 1);
    assert.equal(counters[Counter.LastPacketTs], 1_767_225_640.25);
    assert.equal(files.length, 1);
    assert.equal(files[0].packets, 13);
    const got = await tcpdumpPackets(files[0].path);
    assert.deepEqual(got.map((p) => p.hex), expected);
    assert.equal(readFileIndex(indexPathFor(files[0].path)).header.packetCount, 13);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pipeline: a large flow is reported at the threshold and at each doubling, counted once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-pipeline-" });
  try {
    const { pipeline, counters, reports } = pipelineIn(dir, { largeFlowThreshold: 1000 });
    const source = new Frames();
    for (let i = 0; i < 20; i++) {
      pipeline.handle(source.set(ipv4Frame(ip(1), ip(2), udp(7000, 9000, 120)), i)); // 162 bytes
    }
    pipeline.close();
    // 7 × 162 = 1134 crosses 1000, 13 × 162 = 2106 crosses 2000; 3240 stays below 4000.
    assert.deepEqual(reports.map((r) => [r.bytes, r.threshold]), [[1134, 1000], [2106, 2000]]);
    const flow = reports[0].flow;
    assert.deepEqual([flow.src, flow.dst].sort(), ["198.18.0.1", "198.18.0.2"]);
    assert.deepEqual([flow.srcPort, flow.dstPort].sort(), [7000, 9000]);
    assert.equal(flow.proto, 17);
    assert.equal(counters[Counter.LargeFlows], 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pipeline: a file with twice --max-flows distinct flows is rotated between batches", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-pipeline-" });
  try {
    const { pipeline, files } = pipelineIn(dir, { maxFlows: 16 });
    const source = new Frames();
    for (let flow = 0; flow < 31; flow++) {
      pipeline.handle(source.set(ipv4Frame(ip(1), ip(2), udp(1000 + flow, 53, 10)), flow));
    }
    assert.equal(pipeline.rotateIfManyFlows(), false, "31 flows stay in the file");
    pipeline.handle(source.set(ipv4Frame(ip(1), ip(2), udp(1031, 53, 10)), 31));
    assert.equal(pipeline.rotateIfManyFlows(), true, "the 32nd rotates");
    assert.equal(files.length, 1);
    assert.equal(files[0].packets, 32);
    pipeline.handle(source.set(ipv4Frame(ip(1), ip(2), udp(1032, 53, 10)), 32));
    assert.equal(pipeline.rotateIfManyFlows(), false);
    pipeline.close();
    assert.deepEqual(files.map((f) => f.packets), [32, 1]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pipeline: another link type finishes the file and decodes the next packets with it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-pipeline-" });
  try {
    const { pipeline, counters, files } = pipelineIn(dir);
    const source = new Frames();
    const frame = ipv4Frame(ip(1), ip(2), udp(1, 2, 10));
    pipeline.handle(source.set(frame, 0));
    pipeline.setFormat(101, 65535); // DLT_RAW: the same bytes are now an IP packet
    assert.equal(pipeline.linkType, 101);
    assert.equal(files.length, 1);
    pipeline.handle(source.set(frame.subarray(14), 1));
    pipeline.close();
    assert.deepEqual(files.map((f) => [f.linkType, f.snaplen, f.packets]), [
      [1, 262144, 1],
      [101, 65535, 1],
    ]);
    // Both decoded as the same flow: one flow started.
    assert.equal(pipeline.flows.started, 1);
    assert.equal(counters[Counter.UndecodedFrames], 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
