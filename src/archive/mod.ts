/**
 * The archive of finalized capture files: file naming, crash recovery, the catalog, retention,
 * the lock.
 *
 * @module
 */
export {
  archiveRelative,
  dayFolder,
  finalPathFor,
  INDEX_SUFFIX,
  indexPathFor,
  isPcapName,
  isTempName,
  OPEN_DIR,
  openStatePath,
  outputFileName,
  type OutputNameFields,
  parseOutputFileName,
  sanitizeIface,
  tempPathFor,
} from "./naming.ts";
export {
  recoverTempFile,
  recoverTempFiles,
  type RecoveryHooks,
  type RecoveryReport,
} from "./recovery.ts";
export {
  Catalog,
  type CatalogEntry,
  type CatalogOpenOptions,
  type CatalogSource,
  type TimeRange,
} from "./catalog.ts";
