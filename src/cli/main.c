#include <stdio.h>
int main(void) { puts("shardflow: under construction"); return 0; }
