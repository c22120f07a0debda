/* Agent plugins: shared objects loaded with dlopen, whose sf_plugin_init()
 * registers their agents (shardflow/plugin.h). */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/plugin.h"

/* Plugins are few (a workflow names a handful): a fixed table. */
#define MAX_PLUGINS 64

typedef struct loaded_plugin {
    void *handle;
    char *path;        /* as given */
    const char *name;  /* from sf_plugin_name(), owned by the plugin; may be NULL */
    sf_status failed;  /* SF_OK, or the status of a failed sf_plugin_init */
    char *message;     /* its message (NULL when it succeeded) */
} loaded_plugin;

static loaded_plugin plugins[MAX_PLUGINS];
static int nplugins;

typedef sf_status (*init_fn)(void);
typedef const char *(*name_fn)(void);

/* dlerror() of the last dl* call, or a fallback when it has none. */
static const char *dl_message(void)
{
    const char *e = dlerror();
    return e != NULL ? e : "no further detail";
}

sf_status sf_plugin_load(const char *path)
{
    SF_CHECK(path != NULL && path[0] != '\0', SF_ERR_CONFIG, "plugin: an empty path");
    SF_CHECK(nplugins < MAX_PLUGINS, SF_ERR_CONFIG, "plugin %s: at most %d plugins can be loaded", path,
             MAX_PLUGINS);
    /* dlopen searches the library path for a name without a '/'; a plugin
     * is a file the user named, so such a name means the current directory. */
    char local[4096];
    const char *open_path = path;
    if (strchr(path, '/') == NULL) {
        int n = snprintf(local, sizeof local, "./%s", path);
        SF_CHECK(n > 0 && (size_t)n < sizeof local, SF_ERR_CONFIG, "plugin %s: path too long", path);
        open_path = local;
    }
    (void)dlerror();
    void *h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    SF_CHECK(h != NULL, SF_ERR_CONFIG, "plugin %s: cannot load: %s", path, dl_message());
    /* The same file by another path gives the same handle: already done
     * (dlclose only drops the reference this dlopen added). */
    for (int i = 0; i < nplugins; i++)
        if (plugins[i].handle == h) {
            dlclose(h);
            /* A plugin whose init failed fails the same way again, rather
             * than re-registering its agents ("name taken"). */
            if (plugins[i].failed != SF_OK)
                return sf_error_set(plugins[i].failed, __FILE__, __LINE__, "%s", plugins[i].message);
            return SF_OK;
        }
    (void)dlerror();
    /* POSIX guarantees that a function's address from dlsym converts to a
     * function pointer. */
    init_fn init = (init_fn)dlsym(h, "sf_plugin_init");
    if (init == NULL) {
        char why[1024];
        snprintf(why, sizeof why, "%s", dl_message());
        dlclose(h);
        return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                            "plugin %s: not a shardflow plugin: no sf_plugin_init function (%s)", path, why);
    }
    name_fn name = (name_fn)dlsym(h, "sf_plugin_name");
    const char *label = name != NULL ? name() : NULL;
    char *copy = strdup(path);
    if (copy == NULL) {
        dlclose(h);
        return sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "plugin %s: out of memory", path);
    }
    sf_error_clear();
    sf_status rc = init();
    if (rc != SF_OK) {
        /* The plugin stays loaded: an agent it registered before failing
         * points into it. */
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", sf_error_message());
        sf_error_set(rc, __FILE__, __LINE__, "plugin %s%s%s%s: sf_plugin_init failed: %s", path, label ? " (" : "",
                     label ? label : "", label ? ")" : "", msg[0] ? msg : sf_status_name(rc));
        plugins[nplugins++] = (loaded_plugin){h, copy, label, rc, strdup(sf_error_message())};
        if (plugins[nplugins - 1].message == NULL) plugins[nplugins - 1].message = copy;
        return rc;
    }
    plugins[nplugins++] = (loaded_plugin){h, copy, label, SF_OK, NULL};
    return SF_OK;
}

int sf_plugin_count(void) { return nplugins; }

const char *sf_plugin_path(int i) { return i >= 0 && i < nplugins ? plugins[i].path : NULL; }

const char *sf_plugin_label(int i) { return i >= 0 && i < nplugins ? plugins[i].name : NULL; }
