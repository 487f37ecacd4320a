/**
 * The archive of finalized capture files: crash recovery, the catalog, retention, the lock.
 *
 * @module
 */
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
