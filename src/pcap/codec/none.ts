/** No compression: the file is a plain pcap, one block with nothing to measure or decode. */
import { type Codec, MEASURE_INVALID, type StreamDecoder } from "./codec.ts";

/** The identity codec. */
export const none = {
  name: "none",
  suffix: "",
  otherSuffixes: [],
  indexCode: 0,
  defaultLevel: 0,
  maxLevel: 0,
  unitName: "pcap",
  /** Whatever no other codec claims (the table asks this one last). */
  detect: (_head: Uint8Array): boolean => true,
  compress: (data: Uint8Array): Uint8Array => data,
  decompress: (bytes: Uint8Array): Uint8Array => bytes,
  measure: (): number => MEASURE_INVALID,
  isForeignStream: (): boolean => false,
  scanUnit: (): null => null,
  decompressUnits: (comp: Uint8Array): Uint8Array => comp,
  canStream: (): boolean => false,
  streamDecoder: (): StreamDecoder => {
    throw new Error("Cannot stream an uncompressed file: it is read directly");
  },
} as const satisfies Codec;
