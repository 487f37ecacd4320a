/** cutcap's version, shown by `cutcap version`, in logs and in the build-info metric. */
export const VERSION = "0.1.0";
