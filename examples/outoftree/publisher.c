/* publisher.c: publisher.cc in C, over the C API (<shmesh/shmesh.h>).
 *
 *   gcc -std=c11 publisher.c -o publisher $(pkg-config --cflags --libs shmesh)
 *   ./publisher /tmp/shmesh-demo unix:/tmp/shmesh-demo/a.grpc hello/c 3
 */
#include <stdio.h>
#include <stdlib.h>

#include <shmesh/shmesh.h>

static int fail(const char* what, const shmesh_error* err) {
  fprintf(stderr, "publisher: %s: %s: %s\n", what, shmesh_status_code_name(err->code), err->message);
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s RUN_DIR SEED TOPIC COUNT\n", argv[0]);
    return 2;
  }
  char config[1024];
  snprintf(config, sizeof config, "name: \"c-publisher\"\nrun_dir: \"%s\"\nseeds: \"%s\"\n", argv[1], argv[2]);
  shmesh_error err;
  shmesh_node* node = NULL;
  shmesh_publisher* pub = NULL;
  int rc = 0;
  if (shmesh_node_create_from_text(config, &node, &err) != SHMESH_OK) return fail("create", &err);
  if (shmesh_node_advertise(node, argv[3], NULL, &pub, &err) != SHMESH_OK ||
      shmesh_node_start(node, &err) != SHMESH_OK ||
      shmesh_publisher_wait_for_subscribers(pub, 1, 20000, &err) != SHMESH_OK) {
    rc = fail("start", &err);
  }
  const int count = atoi(argv[4]);
  for (int i = 1; rc == 0 && i <= count; ++i) {
    char text[64];
    const int len = snprintf(text, sizeof text, "hello %d from C", i);
    if (shmesh_publisher_publish(pub, text, (size_t)len, 5000, NULL, &err) != SHMESH_OK) rc = fail("publish", &err);
  }
  if (rc == 0) printf("publisher: published %d messages on %s\n", count, argv[3]);
  shmesh_publisher_destroy(pub);
  shmesh_node_destroy(node); /* stops it */
  return rc;
}
