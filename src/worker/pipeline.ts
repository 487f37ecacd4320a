/**
 * The capture pipeline: what happens to each packet a capture worker reads — decode, count it in
 * the flow table, apply the cutoff, append it to the rotating output and note it in the open file's
 * index — plus the index hook that writes each file's index before its rename, large-flow reports
 * and the rotation that bounds a file's distinct flows. The worker (src/worker/worker.ts), the
 * pipeline benchmark (bench/pipeline.ts) and the pipeline fuzz test (tests/support/pipeline_fuzz.ts)
 * all run this one.
 *
 * `handle()` is the hot path: no allocation, no FFI call (the source's `next()` makes at most one),
 * and one shape of source per worker, so its calls stay monomorphic.
 *
 * @module
 */
import type { CaptureSource } from "../capture/source.ts";
import { Cutoff, FlowTable } from "../flow/mod.ts";
import { crossedLevel, largeFlowLevel } from "../flow/large_flows.ts";
import { IndexBuilder } from "../index/mod.ts";
import { indexPcapFile } from "../index/index_pcap.ts";
import { decodePacket } from "../packet/mod.ts";
import { FlowKind, KEY_WORDS, PacketInfo } from "../packet/packet_info.ts";
import { describeKey, type KeyDescription } from "../packet/describe.ts";
import { RotatingOutput, type RotatingOutputOptions } from "../store/mod.ts";
import type { FinalizedFile } from "../store/pcap_file_writer.ts";
import { indexPathFor } from "../archive/naming.ts";
import { Counter } from "./counters.ts";

/** One packet as a capture source hands it over (see CaptureSource), valid until its next `next()`. */
export type PacketView = Pick<
  CaptureSource,
  "data" | "offset" | "caplen" | "wireLen" | "tsSec" | "tsFrac" | "nanosecond" | "settle"
>;

/** Options of {@link CapturePipeline}. */
export interface CapturePipelineOptions {
  /** Flow table size (`--max-flows`). */
  maxFlows: number;
  /** Seconds without a packet after which a flow is expired (`--flow-timeout`). */
  flowTimeout: number;
  /** Bytes and packets of a flow stored before the rest is cut (0 = no limit). */
  byteCutoff: number;
  packetCutoff: number;
  /** Bytes at which a flow is reported as large, then at each doubling; 0 = off. */
  largeFlowThreshold: number;
  /** Receives each large-flow report (rare: may allocate). */
  onLargeFlow?: (flow: KeyDescription, bytes: number, threshold: number) => void;
  /** Community ID seed written to each index. */
  communityIdSeed?: number;
  /** Packet time is wall-clock time (live capture): report how late each index is written. */
  live: boolean;
  /** The worker's counter block (counters.ts): the pipeline adds its per-packet counts there. */
  counters: Float64Array;
  /**
   * The rotating output; the pipeline adds the hook that writes each file's index before its
   * rename. Its output directory also takes the index builder's spill file.
   */
  output: Omit<RotatingOutputOptions, "beforeRename">;
}

/**
 * A file holds at most this many times --max-flows distinct flows: beyond, the index builder's
 * per-file maps and copied keys (~50 bytes a flow) and the index would grow without bound.
 */
const FILE_FLOWS_PER_TABLE = 2;

/** Decode → flow table → cutoff → output → index, for one worker's packets. */
export class CapturePipeline {
  readonly flows: FlowTable;
  readonly output: RotatingOutput;
  readonly index: IndexBuilder;
  /** Packets handled so far (stored or not). */
  packetsSeen = 0;
  readonly #cutoff: Cutoff;
  readonly #info = new PacketInfo();
  readonly #counters: Float64Array;
  readonly #live: boolean;
  /** Interface (or source) name and worker number, as the index records them. */
  readonly #iface: string;
  readonly #worker: number;
  readonly #onLargeFlow: CapturePipelineOptions["onLargeFlow"];
  /** Bytes at which a flow is reported as large (then at each doubling); Infinity when off. */
  readonly #largeFlowThreshold: number;
  /** Distinct flows after which the open file is rotated (FILE_FLOWS_PER_TABLE × --max-flows). */
  readonly #maxFileFlows: number;
  /** The link type of the packets handled, cached: asking a libpcap handle per packet would be a
   * second FFI call. */
  #linkType: number;
  /** Flow id and wire length of the packet being written (-1: none): a rotation it triggers
   * leaves it out of the finished file's flow totals. */
  #inFlightFlow = -1;
  #inFlightLen = 0;

  constructor(options: CapturePipelineOptions) {
    this.flows = new FlowTable({ maxFlows: options.maxFlows, flowTimeout: options.flowTimeout });
    this.#cutoff = new Cutoff({ bytes: options.byteCutoff, packets: options.packetCutoff });
    // Keys of live flows are read from the table when an index is written.
    this.index = IndexBuilder.forFlowTable(this.flows, {
      spillDir: options.output.outDir,
      communityIdSeed: options.communityIdSeed,
    });
    this.#counters = options.counters;
    this.#live = options.live;
    this.#iface = options.output.iface;
    this.#worker = options.output.worker;
    this.#onLargeFlow = options.onLargeFlow;
    this.#largeFlowThreshold = options.largeFlowThreshold > 0
      ? options.largeFlowThreshold
      : Infinity;
    this.#maxFileFlows = FILE_FLOWS_PER_TABLE * options.maxFlows;
    this.#linkType = options.output.linkType;
    this.output = new RotatingOutput({
      ...options.output,
      beforeRename: (file) => this.#writeIndex(file),
    });
  }

  /** The per-packet path (HOT): no allocation, no FFI call. */
  handle(packet: PacketView): void {
    const info = this.#info;
    const flows = this.flows;
    const counters = this.#counters;
    const wireLen = packet.wireLen;
    decodePacket(this.#linkType, packet.data, packet.offset, packet.caplen, info);
    const ts = packet.tsSec + packet.tsFrac * (packet.nanosecond ? 1e-9 : 1e-6);
    const id = flows.observe(info.key, ts, wireLen, info.tcpFlags);
    this.packetsSeen++;
    counters[Counter.BytesSeen] += wireLen;
    counters[Counter.LastPacketTs] = ts;
    if (info.kind === FlowKind.Opaque) counters[Counter.UndecodedFrames]++;
    if (packet.caplen > wireLen) counters[Counter.CaplenOverLen]++;
    if (flows.bytesBefore + wireLen >= this.#largeFlowThreshold) this.#checkLargeFlow(id, wireLen);
    if (!this.#cutoff.allows(flows.packetsBefore, flows.bytesBefore)) {
      flows.markCut(id, flows.packetsBefore + 1);
      return;
    }
    // Offline packets stored are moved to one place first (see PcapHandle.settle), so the writer
    // reuses its views instead of making one per packet.
    packet.settle();
    this.#inFlightFlow = id;
    this.#inFlightLen = wireLen;
    const offset = this.output.write(
      packet.data,
      packet.offset,
      packet.caplen,
      wireLen,
      packet.tsSec,
      packet.tsFrac,
    );
    this.#inFlightFlow = -1;
    if (offset < 0) return; // lost to a write error: counted by the output, not indexed
    this.index.record(id, ts, offset, wireLen);
    if (info.innerVlanCount + info.mplsCount > 0) this.index.noteTags(id, info);
    counters[Counter.PacketsWritten]++;
    counters[Counter.BytesWritten] += wireLen;
  }

  /** The link type packets are decoded and written with. */
  get linkType(): number {
    return this.#linkType;
  }

  /**
   * Sets the format of the packets that follow (a reopened interface or the next file may have
   * another link type); the output rotates when it differs from its open file's.
   */
  setFormat(linkType: number, snaplen: number): void {
    this.#linkType = linkType;
    this.output.setFormat({ linkType, snaplen });
  }

  /**
   * Rotates when the open file holds `maxFileFlows` distinct flows, far more than the table holds
   * (a scan, a flood of one-packet flows): a new file bounds the index builder's per-file memory
   * and the size of one index. Called between batches; true when it rotated.
   */
  rotateIfManyFlows(): boolean {
    if (this.index.flowCount < this.#maxFileFlows) return false;
    this.output.rotate();
    return true;
  }

  /** Time moves on without packets (a quiet link): rotation by age and flow expiry follow `nowSec`. */
  idle(nowSec: number): void {
    this.output.rotateIfDue(nowSec);
    this.flows.expireIdle(nowSec);
  }

  /** Finalizes the open file, ends every flow and releases the index builder. */
  close(): void {
    this.output.close();
    this.flows.expireAll();
    this.index.close();
  }

  /** The index hook: writes `file`'s index beside it, before its rename. */
  #writeIndex(file: FinalizedFile): void {
    const iface = this.#iface;
    const worker = this.#worker;
    const started = performance.now();
    const indexPath = indexPathFor(file.path);
    if (this.index.packetCount > file.packets) {
      // A block failed to reach the disk (ENOSPC, EIO...): its records were indexed when they
      // were buffered and are not in the file. Index the file as it is on disk instead.
      indexPcapFile(file.tmpPath, { iface, worker, indexPath });
    } else {
      this.index.write(indexPath, {
        pcapName: file.path.slice(file.path.lastIndexOf("/") + 1),
        linkType: file.linkType,
        snaplen: file.snaplen,
        nanosecond: file.nanosecond,
        compress: file.compress,
        blocks: file.blocks,
        iface,
        worker,
        pcapSize: file.bytesOnDisk,
        dataSize: file.bytesUncompressed,
        inFlight: this.#inFlightFlow < 0
          ? undefined
          : { flowId: this.#inFlightFlow, wireLen: this.#inFlightLen },
      });
    }
    this.index.reset();
    const counters = this.#counters;
    counters[Counter.IndexBuildSeconds] += (performance.now() - started) / 1000;
    // How long after its last packet the file's index was written (live capture: packet time is
    // wall-clock time; a replay's packet times are not, so no lag is reported for it).
    if (this.#live) {
      counters[Counter.IndexLagSeconds] = Math.max(0, Date.now() / 1000 - file.lastTs);
    }
  }

  /** Reports a flow that crossed the large-flow threshold or one of its doublings (rare: not hot). */
  #checkLargeFlow(id: number, wireLen: number): void {
    const before = this.flows.bytesBefore;
    const threshold = this.#largeFlowThreshold;
    const level = crossedLevel(before, before + wireLen, threshold);
    if (level < 0) return;
    if (level === 0 || largeFlowLevel(before, threshold) < 0) {
      this.#counters[Counter.LargeFlows]++;
    }
    if (this.#onLargeFlow === undefined) return;
    const key = new Uint32Array(KEY_WORDS);
    this.flows.copyKey(id, key);
    this.#onLargeFlow(describeKey(key), before + wireLen, threshold * 2 ** level);
  }
}
