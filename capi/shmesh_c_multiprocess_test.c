/* Two processes talk through the C API: the test binary execs itself as a
 * child ("--child DIR") before any node exists (a fork amid the nodes'
 * threads could inherit a held lock), then parent node "parent" and child
 * node "child", in the same run directory, exchange messages both ways and
 * call each other's service.
 *
 *   child                                  parent
 *   start, wait for the parent
 *   send "hello from child"        ->      receive it
 *   receive "ping"                 <-      send "ping"
 *                                   <-     call child/echo "xyz" -> "xyz"
 *   call parent/upper "abc" -> "ABC" ->
 *   send "child ok"                ->      receive it
 *   (waits in receive)                     SIGSTOP: unresponsive callback (1)
 *                                          SIGCONT: unresponsive callback (0)
 *   receive "done"                 <-      send "done"
 *   exit 0                                 waitpid: 0; peer-down callback
 */
#include "capi/c_test_util.h"

#include <ctype.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdatomic.h>
#include <sys/wait.h>

/* Each side dies (SIGALRM fails the test) rather than hang. */
enum { kAlarmSeconds = 30 };

/* The parent's peer callbacks: the last unresponsive state reported (-1:
 * none yet), how many times, and how many peers went down. */
static atomic_int child_unresponsive = -1;
static atomic_int unresponsive_calls;
static atomic_int peer_downs;

static void on_unresponsive(const shmesh_peer_info* peer, int unresponsive, void* user_data) {
  (void)user_data;
  CHECK(strcmp(peer->name, "child") == 0);
  atomic_store(&child_unresponsive, unresponsive);
  atomic_fetch_add(&unresponsive_calls, 1);
}

static void on_peer_down(const shmesh_peer_info* peer, void* user_data) {
  (void)user_data;
  CHECK(strcmp(peer->name, "child") == 0);
  atomic_fetch_add(&peer_downs, 1);
}

/* Waits up to 10 s for *v to equal want. */
static int wait_for_value(atomic_int* v, int want) {
  for (int i = 0; i < 1000; ++i) {
    if (atomic_load(v) == want) return 1;
    test_sleep_ms(10);
  }
  return 0;
}

static shmesh_status_code upper_service(const shmesh_request* req, shmesh_responder* resp,
                                        void* user_data) {
  (void)user_data;
  char buf[256];
  size_t n = req->payload_len < sizeof(buf) ? req->payload_len : sizeof(buf);
  memcpy(buf, req->payload, n);
  for (size_t i = 0; i < n; ++i) buf[i] = (char)toupper((unsigned char)buf[i]);
  return shmesh_responder_write(resp, buf, n, NULL);
}

static shmesh_status_code echo_service(const shmesh_request* req, shmesh_responder* resp,
                                       void* user_data) {
  (void)user_data;
  return shmesh_responder_write(resp, req->payload, req->payload_len, NULL);
}

/* Receives the next message on `node` (10 s) and checks it. */
static void expect_message(shmesh_node* node, const char* from, const char* payload) {
  shmesh_error err;
  shmesh_message_owned m = {0};
  CHECK_OK(shmesh_node_receive(node, 10000, &m, &err));
  if (strcmp(m.from, from) != 0 || m.payload_len != strlen(payload) ||
      memcmp(m.payload, payload, m.payload_len) != 0) {
    fprintf(stderr, "%s: want \"%s\" from %s, got \"%s\" from %s\n", shmesh_node_name(node),
            payload, from, (const char*)m.payload, m.from);
    CHECK(0);
  }
  shmesh_message_owned_free(&m);
}

/* Calls `service` with `request` and checks the response, retrying while
 * the server's service is not known yet (NOT_FOUND: it is told over the
 * link's control channel once the link is up). */
static void expect_call(shmesh_node* node, const char* service, const char* request,
                        const char* response) {
  shmesh_error err;
  void* out = NULL;
  size_t len = 0;
  shmesh_status_code code = SHMESH_NOT_FOUND;
  for (int i = 0; i < 500 && code == SHMESH_NOT_FOUND; ++i) {
    code = shmesh_node_call(node, service, request, strlen(request), 5000, NULL, &out, &len, &err);
    if (code == SHMESH_NOT_FOUND) test_sleep_ms(10);
  }
  CHECK_OK(code);
  CHECK(len == strlen(response) && memcmp(out, response, len) == 0);
  shmesh_free(out);
}

static int run_child(const char* dir) {
  alarm(kAlarmSeconds);
  shmesh_error err;
  char text[1024];
  test_config(text, sizeof(text), dir, "child", "parent");
  shmesh_node* node = NULL;
  CHECK_OK(shmesh_node_create_from_text(text, &node, &err));
  shmesh_service* echo = NULL;
  CHECK_OK(shmesh_node_serve(node, "child/echo", echo_service, NULL, &echo, &err));
  CHECK_OK(shmesh_node_start(node, &err));
  CHECK_OK(shmesh_node_wait_for_peers(node, 1, 15000, &err));
  CHECK_OK(shmesh_node_send(node, "parent", "hello from child", 16, 5000, &err));
  expect_message(node, "parent", "ping");
  expect_call(node, "parent/upper", "abc", "ABC");
  CHECK_OK(shmesh_node_send(node, "parent", "child ok", 8, 5000, &err));
  expect_message(node, "parent", "done");
  CHECK(shmesh_service_handled(echo) == 1);
  shmesh_service_destroy(echo);
  shmesh_node_destroy(node);
  return 0;
}

static int run_parent(void) {
  alarm(kAlarmSeconds);
  char dir[64];
  test_make_dir(dir, sizeof(dir));

  /* The child first, before this process has a node (or any thread). */
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  CHECK(n > 0);
  exe[n] = '\0';
  pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    /* Dies with the parent (a failed CHECK there leaves no orphan). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char* const argv[] = {exe, "--child", dir, NULL};
    execv(exe, argv);
    _exit(127);
  }

  shmesh_error err;
  char text[1024];
  test_config(text, sizeof(text), dir, "parent", NULL);
  /* The shortest allowed: a stopped child is reported after 300 ms. */
  strncat(text, "unresponsive_after_ms: 300\n", sizeof(text) - strlen(text) - 1);
  shmesh_node* node = NULL;
  CHECK_OK(shmesh_node_create_from_text(text, &node, &err));
  CHECK_OK(shmesh_node_set_peer_unresponsive_handler(node, on_unresponsive, NULL, &err));
  CHECK_OK(shmesh_node_set_peer_down_handler(node, on_peer_down, NULL, &err));
  shmesh_service* upper = NULL;
  CHECK_OK(shmesh_node_serve(node, "parent/upper", upper_service, NULL, &upper, &err));
  CHECK_OK(shmesh_node_start(node, &err));
  CHECK_OK(shmesh_node_wait_for_peers(node, 1, 15000, &err));
  char** peers = NULL;
  size_t count = 0;
  CHECK_OK(shmesh_node_peers(node, &peers, &count, &err));
  CHECK(count == 1 && strcmp(peers[0], "child") == 0);
  shmesh_free(peers);

  expect_message(node, "child", "hello from child");
  CHECK_OK(shmesh_node_send(node, "child", "ping", 4, 5000, &err));
  expect_call(node, "child/echo", "xyz", "xyz");
  expect_message(node, "child", "child ok");
  CHECK(shmesh_service_handled(upper) == 1);

  /* The child's process stops and runs again. */
  CHECK(atomic_load(&unresponsive_calls) == 0);
  CHECK(kill(child, SIGSTOP) == 0);
  CHECK(wait_for_value(&child_unresponsive, 1));
  CHECK(kill(child, SIGCONT) == 0);
  CHECK(wait_for_value(&child_unresponsive, 0));
  CHECK(atomic_load(&unresponsive_calls) == 2);

  CHECK_OK(shmesh_node_send(node, "child", "done", 4, 5000, &err));

  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "child failed: status 0x%x\n", status);
    CHECK(0);
  }
  CHECK(wait_for_value(&peer_downs, 1));
  shmesh_service_destroy(upper);
  shmesh_node_destroy(node);
  test_remove_dir(dir);
  printf("ok multiprocess\n");
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "--child") == 0) return run_child(argv[2]);
  return run_parent();
}
