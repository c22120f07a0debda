/* Agent plugins: shared objects that add agents without touching the
 * engine.
 *
 * A plugin is built against the public headers only and exports
 *
 *     sf_status sf_plugin_init(void);          (required)
 *     const char *sf_plugin_name(void);        (optional, for messages)
 *
 * sf_plugin_init() calls sf_agent_register() for each of its agents (whose
 * ops must live as long as the process: static storage in the plugin). The
 * plugin's references to sf_agent_register, the option helpers, sf_buf_*,
 * sf_json_* and the rest resolve against the shardflow executable, which
 * exports its symbols; a plugin does not link the library itself. Every
 * rank loads the same plugins, from `plugins:` in the workflow or
 * `--plugin PATH` on the command line, before the stages are checked.
 *
 * A plugin is never unloaded: its agents stay registered until the process
 * ends. */
#ifndef SF_PLUGIN_H
#define SF_PLUGIN_H

#include "shardflow/status.h"

/* Marks the entry points of a plugin as exported even when it is built with
 * -fvisibility=hidden. */
#define SF_PLUGIN_EXPORT __attribute__((visibility("default")))

/* The entry points a plugin defines (declared here so that the plugin's
 * definitions are checked against them; shardflow itself defines neither). */
SF_PLUGIN_EXPORT sf_status sf_plugin_init(void);
SF_PLUGIN_EXPORT const char *sf_plugin_name(void);

/* Loads a plugin (dlopen RTLD_NOW|RTLD_LOCAL), calls its sf_plugin_init;
 * messages name the path and the dlerror(). A path without a '/' is taken
 * relative to the current directory, not searched for in the library path.
 * Loading a plugin that is already loaded (by any path to the same file)
 * does nothing and succeeds, so `--plugin X` and `plugins: [X]` may name
 * the same file. Fails with SF_ERR_CONFIG when the file cannot be loaded or
 * has no sf_plugin_init, and with sf_plugin_init's own status (its message
 * prefixed with the path) when that fails. Not thread-safe; not collective
 * (every rank loads the same plugins). */
sf_status sf_plugin_load(const char *path);

/* The plugins loaded so far, in load order (for run.json and listings):
 * their number, and the path as given and the sf_plugin_name() (NULL when
 * the plugin has none) of the i-th one. Not collective. */
int sf_plugin_count(void);
const char *sf_plugin_path(int i);
const char *sf_plugin_label(int i);

#endif
