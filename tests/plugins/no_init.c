/* A shared object that is not a shardflow plugin: it exports a function but
 * no sf_plugin_init, so loading it must fail with a message that says so. */
int sf_test_not_a_plugin(void);

int sf_test_not_a_plugin(void) { return 42; }
