/* Tests of the C API (shmesh.h) with two real nodes in one process:
 * messages by callback and by pull (with the receive fd), send batch and
 * broadcast, peers and peer callbacks, topology (bytes and JSON), topics
 * (callback and pull), services, and the errors (NULL arguments, bad
 * config, unknown peer or service, calls on a destroyed node). */
#include "capi/c_test_util.h"

#include <ctype.h>
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

/* What a callback saw last, copied under `mu` (callbacks run on the nodes'
 * threads). */
typedef struct inbox {
  pthread_mutex_t mu;
  atomic_int count;
  char from[64];
  char topic[256];
  char payload[256];
  size_t payload_len;
} inbox;

static void inbox_init(inbox* in) {
  memset(in, 0, sizeof(*in));
  pthread_mutex_init(&in->mu, NULL);
  atomic_init(&in->count, 0);
}

static void copy_str(char* dst, size_t size, const char* src) {
  snprintf(dst, size, "%s", src);
}

static void on_message(const shmesh_message* msg, void* user_data) {
  inbox* in = (inbox*)user_data;
  pthread_mutex_lock(&in->mu);
  copy_str(in->from, sizeof(in->from), msg->from);
  copy_str(in->topic, sizeof(in->topic), msg->topic);
  in->payload_len = msg->payload_len < sizeof(in->payload) - 1 ? msg->payload_len
                                                                : sizeof(in->payload) - 1;
  memcpy(in->payload, msg->payload, in->payload_len);
  in->payload[in->payload_len] = '\0';
  pthread_mutex_unlock(&in->mu);
  atomic_fetch_add(&in->count, 1);
}

/* Waits up to 5 s for in->count to reach n. */
static int inbox_wait(inbox* in, int n) {
  for (int i = 0; i < 500; ++i) {
    if (atomic_load(&in->count) >= n) return 1;
    test_sleep_ms(10);
  }
  return 0;
}

/* Checks the inbox's last message, under its lock. */
static void inbox_expect(inbox* in, const char* from, const char* topic, const char* payload) {
  pthread_mutex_lock(&in->mu);
  if (strcmp(in->from, from) != 0 || strcmp(in->topic, topic) != 0 ||
      strcmp(in->payload, payload) != 0 || in->payload_len != strlen(payload)) {
    fprintf(stderr, "inbox: want from=%s topic=%s payload=%s, got from=%s topic=%s payload=%s\n",
            from, topic, payload, in->from, in->topic, in->payload);
    CHECK(0);
  }
  pthread_mutex_unlock(&in->mu);
}

static atomic_int peer_ups;
static atomic_int peer_downs;
static char last_up[64];

static void on_peer_up(const shmesh_peer_info* peer, void* user_data) {
  CHECK(user_data == &peer_ups);
  CHECK(peer->name != NULL && peer->pid > 0);
  copy_str(last_up, sizeof(last_up), peer->name);
  atomic_fetch_add(&peer_ups, 1);
}

static void on_peer_down(const shmesh_peer_info* peer, void* user_data) {
  (void)peer;
  CHECK(user_data == &peer_downs);
  atomic_fetch_add(&peer_downs, 1);
}

static void on_unresponsive(const shmesh_peer_info* peer, int unresponsive, void* user_data) {
  (void)peer;
  (void)unresponsive;
  (void)user_data;
}

/* "text/upper": the request in upper case. */
static shmesh_status_code upper_service(const shmesh_request* req, shmesh_responder* resp,
                                        void* user_data) {
  (void)user_data;
  char buf[256];
  size_t n = req->payload_len < sizeof(buf) ? req->payload_len : sizeof(buf);
  memcpy(buf, req->payload, n);
  for (size_t i = 0; i < n; ++i) buf[i] = (char)toupper((unsigned char)buf[i]);
  shmesh_error err;
  CHECK_OK(shmesh_responder_write(resp, buf, n, &err));
  return SHMESH_OK;
}

/* "text/fail": always PERMISSION_DENIED, with a message naming the caller. */
static shmesh_status_code fail_service(const shmesh_request* req, shmesh_responder* resp,
                                       void* user_data) {
  (void)user_data;
  char msg[128];
  snprintf(msg, sizeof(msg), "no entry for %s", req->from);
  shmesh_error err;
  CHECK_OK(shmesh_responder_set_error_message(resp, msg, &err));
  return SHMESH_PERMISSION_DENIED;
}

/* "text/bad": returns a number that is not a code. */
static shmesh_status_code bad_code_service(const shmesh_request* req, shmesh_responder* resp,
                                           void* user_data) {
  (void)req;
  (void)resp;
  (void)user_data;
  return (shmesh_status_code)99;
}

static void test_version_and_names(void) {
  CHECK(strcmp(shmesh_version(), SHMESH_VERSION) == 0);
  CHECK(strcmp(shmesh_status_code_name(SHMESH_OK), "OK") == 0);
  CHECK(strcmp(shmesh_status_code_name(SHMESH_NOT_FOUND), "NOT_FOUND") == 0);
  CHECK(strcmp(shmesh_status_code_name(SHMESH_UNAUTHENTICATED), "UNAUTHENTICATED") == 0);
  CHECK(strcmp(shmesh_status_code_name((shmesh_status_code)99), "UNKNOWN_CODE") == 0);
  CHECK(SHMESH_UNAUTHENTICATED == 16 && SHMESH_DEADLINE_EXCEEDED == 4);
  shmesh_free(NULL);
  shmesh_message_owned_free(NULL);
  shmesh_node_destroy(NULL);
  shmesh_node_stop(NULL);
  shmesh_publisher_destroy(NULL);
  shmesh_subscription_destroy(NULL);
  shmesh_subscription_unsubscribe(NULL);
  shmesh_service_destroy(NULL);
  CHECK(shmesh_node_name(NULL) == NULL);
  CHECK(shmesh_node_id(NULL) == 0);
  CHECK(shmesh_node_receive_fd(NULL) == -1);
  CHECK(shmesh_subscription_ready_fd(NULL) == -1);
  CHECK(shmesh_publisher_matched(NULL) == 0);
}

static void test_errors(const char* dir) {
  shmesh_error err;
  shmesh_node* node = (shmesh_node*)&err; /* must be reset to NULL on failure */

  /* NULL arguments: INVALID_ARGUMENT naming the argument. */
  CHECK_CODE(shmesh_node_create_from_text(NULL, &node, &err), SHMESH_INVALID_ARGUMENT);
  CHECK(node == NULL);
  CHECK(strstr(err.message, "shmesh_node_create_from_text: argument `config_text` is NULL") != NULL);
  CHECK_CODE(shmesh_node_create_from_text("name: \"x\"", NULL, &err), SHMESH_INVALID_ARGUMENT);
  CHECK_CODE(shmesh_node_create_from_file(NULL, &node, &err), SHMESH_INVALID_ARGUMENT);
  CHECK_CODE(shmesh_node_send(NULL, "p", "x", 1, 0, &err), SHMESH_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "node") != NULL);
  CHECK(shmesh_node_send(NULL, "p", "x", 1, 0, NULL) == SHMESH_INVALID_ARGUMENT);
  CHECK_CODE(shmesh_node_receive(NULL, 0, NULL, &err), SHMESH_INVALID_ARGUMENT);
  CHECK_CODE(shmesh_node_call(NULL, "s", "x", 1, 0, NULL, NULL, NULL, &err),
             SHMESH_INVALID_ARGUMENT);
  CHECK_CODE(shmesh_publisher_publish(NULL, "x", 1, 0, NULL, &err), SHMESH_INVALID_ARGUMENT);
  CHECK_CODE(shmesh_responder_write(NULL, "x", 1, &err), SHMESH_INVALID_ARGUMENT);
  char** names = NULL;
  CHECK_CODE(shmesh_node_peers(NULL, &names, NULL, &err), SHMESH_INVALID_ARGUMENT);
  CHECK(names == NULL);

  /* Bad config text: INVALID_ARGUMENT naming the field and the line. */
  CHECK_CODE(shmesh_node_create_from_text("name: \"x\"\nnmae: \"y\"\n", &node, &err),
             SHMESH_INVALID_ARGUMENT);
  CHECK(node == NULL);
  CHECK(strstr(err.message, "nmae") != NULL);
  CHECK(strstr(err.message, "<text>:2:") != NULL);
  CHECK_CODE(shmesh_node_create_from_text("name: {", &node, &err), SHMESH_INVALID_ARGUMENT);
  /* Parses, but fails validation (no name). */
  CHECK_CODE(shmesh_node_create_from_text("ring_capacity_bytes: 65536", &node, &err),
             SHMESH_INVALID_ARGUMENT);
  CHECK(node == NULL);

  /* A missing file: NOT_FOUND naming it. */
  CHECK_CODE(shmesh_node_create_from_file("/nonexistent/shmesh.textproto", &node, &err),
             SHMESH_NOT_FOUND);
  CHECK(strstr(err.message, "/nonexistent/shmesh.textproto") != NULL);

  /* A node from a file, never started: sends fail, destroy is clean. */
  char path[128];
  snprintf(path, sizeof(path), "%s/lone.textproto", dir);
  char text[1024];
  test_config(text, sizeof(text), dir, "lone", NULL);
  FILE* f = fopen(path, "w");
  CHECK(f != NULL);
  CHECK(fputs(text, f) >= 0);
  CHECK(fclose(f) == 0);
  CHECK_OK(shmesh_node_create_from_file(path, &node, &err));
  CHECK(err.code == SHMESH_OK && err.message[0] == '\0');
  CHECK(strcmp(shmesh_node_name(node), "lone") == 0);
  CHECK_CODE(shmesh_node_send(node, "other", "x", 1, 0, &err), SHMESH_FAILED_PRECONDITION);
  CHECK_CODE(shmesh_node_send(node, NULL, "x", 1, 0, &err), SHMESH_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "peer") != NULL);
  CHECK_CODE(shmesh_node_send(node, "other", NULL, 1, 0, &err), SHMESH_INVALID_ARGUMENT);
  CHECK_CODE(shmesh_node_set_message_handler(node, NULL, NULL, &err), SHMESH_INVALID_ARGUMENT);
  shmesh_node_destroy(node);
}

static void test_two_nodes(const char* dir) {
  shmesh_error err;
  char text[1024];
  shmesh_node* alpha = NULL;
  shmesh_node* bravo = NULL;
  test_config(text, sizeof(text), dir, "alpha", NULL);
  CHECK_OK(shmesh_node_create_from_text(text, &alpha, &err));
  test_config(text, sizeof(text), dir, "bravo", "alpha");
  CHECK_OK(shmesh_node_create_from_text(text, &bravo, &err));

  /* alpha pulls; bravo gets messages by callback. */
  inbox bravo_in;
  inbox_init(&bravo_in);
  CHECK_OK(shmesh_node_set_message_handler(bravo, on_message, &bravo_in, &err));
  CHECK_OK(shmesh_node_set_peer_up_handler(alpha, on_peer_up, &peer_ups, &err));
  CHECK_OK(shmesh_node_set_peer_down_handler(alpha, on_peer_down, &peer_downs, &err));
  CHECK_OK(shmesh_node_set_peer_unresponsive_handler(alpha, on_unresponsive, NULL, &err));

  /* Services on bravo, registered before start. */
  shmesh_service* upper = NULL;
  shmesh_service* fail = NULL;
  shmesh_service* dup = NULL;
  shmesh_service* bad_code = NULL;
  CHECK_OK(shmesh_node_serve(bravo, "text/bad", bad_code_service, NULL, &bad_code, &err));
  CHECK_OK(shmesh_node_serve(bravo, "text/upper", upper_service, NULL, &upper, &err));
  CHECK_OK(shmesh_node_serve(bravo, "text/fail", fail_service, NULL, &fail, &err));
  CHECK_CODE(shmesh_node_serve(bravo, "text/upper", upper_service, NULL, &dup, &err),
             SHMESH_ALREADY_EXISTS);
  CHECK(dup == NULL);

  CHECK_OK(shmesh_node_start(alpha, &err));
  CHECK_OK(shmesh_node_start(bravo, &err));
  CHECK_CODE(shmesh_node_start(bravo, &err), SHMESH_FAILED_PRECONDITION);
  CHECK_CODE(shmesh_node_set_message_handler(alpha, on_message, &bravo_in, &err),
             SHMESH_FAILED_PRECONDITION);
  CHECK_OK(shmesh_node_wait_for_peers(alpha, 1, 10000, &err));
  CHECK_OK(shmesh_node_wait_for_peers(bravo, 1, 10000, &err));
  CHECK_CODE(shmesh_node_wait_for_peers(alpha, 2, 0, &err), SHMESH_DEADLINE_EXCEEDED);

  /* Identity. */
  CHECK(strcmp(shmesh_node_name(alpha), "alpha") == 0);
  CHECK(shmesh_node_id(alpha) != 0 && shmesh_node_id(alpha) != shmesh_node_id(bravo));
  char* address = NULL;
  CHECK_OK(shmesh_node_grpc_address(alpha, &address, &err));
  CHECK(strstr(address, "alpha.grpc") != NULL);
  shmesh_free(address);

  /* Peers and the peer-up callback. */
  char** names = NULL;
  size_t count = 0;
  CHECK_OK(shmesh_node_peers(alpha, &names, &count, &err));
  CHECK(count == 1 && strcmp(names[0], "bravo") == 0 && names[1] == NULL);
  shmesh_free(names);
  for (int i = 0; i < 500 && atomic_load(&peer_ups) < 1; ++i) test_sleep_ms(10);
  CHECK(atomic_load(&peer_ups) == 1);
  CHECK(strcmp(last_up, "bravo") == 0);

  /* alpha -> bravo, by callback. */
  CHECK_OK(shmesh_node_send(alpha, "bravo", "hello bravo", 11, 1000, &err));
  CHECK(inbox_wait(&bravo_in, 1));
  inbox_expect(&bravo_in, "alpha", "", "hello bravo");

  /* bravo -> alpha, by pull, with the receive fd. */
  shmesh_message_owned m = {0};
  CHECK_CODE(shmesh_node_receive(alpha, 0, &m, &err), SHMESH_DEADLINE_EXCEEDED);
  CHECK(m.from == NULL && m.payload == NULL);
  CHECK_OK(shmesh_node_send(bravo, "alpha", "hello alpha", 11, -1, &err));
  struct pollfd pfd = {shmesh_node_receive_fd(alpha), POLLIN, 0};
  CHECK(pfd.fd >= 0);
  CHECK(poll(&pfd, 1, 5000) == 1 && (pfd.revents & POLLIN));
  CHECK_OK(shmesh_node_receive(alpha, 0, &m, &err));
  CHECK(strcmp(m.from, "bravo") == 0 && strcmp(m.topic, "") == 0);
  CHECK(m.payload_len == 11 && memcmp(m.payload, "hello alpha", 11) == 0);
  CHECK(((char*)m.payload)[11] == '\0');
  shmesh_message_owned_free(&m);
  CHECK(m.from == NULL);
  shmesh_message_owned_free(&m); /* twice is fine */
  CHECK_CODE(shmesh_node_receive(alpha, 20, &m, &err), SHMESH_DEADLINE_EXCEEDED);

  /* An empty payload. */
  CHECK_OK(shmesh_node_send(bravo, "alpha", NULL, 0, 1000, &err));
  CHECK_OK(shmesh_node_receive(alpha, 5000, &m, &err));
  CHECK(m.payload_len == 0 && m.payload != NULL);
  shmesh_message_owned_free(&m);

  /* Errors on a running node. */
  CHECK_CODE(shmesh_node_send(alpha, "nobody", "x", 1, 100, &err), SHMESH_NOT_FOUND);
  CHECK(strstr(err.message, "nobody") != NULL);
  CHECK_CODE(shmesh_node_send(alpha, "alpha", "x", 1, 100, &err), SHMESH_INVALID_ARGUMENT);
  /* A message longer than shmesh_error's buffer is truncated with "...". */
  char long_name[3000];
  memset(long_name, 'n', sizeof(long_name) - 1);
  long_name[sizeof(long_name) - 1] = '\0';
  CHECK_CODE(shmesh_node_send(alpha, long_name, "x", 1, 100, &err), SHMESH_NOT_FOUND);
  CHECK(strlen(err.message) == SHMESH_ERROR_MESSAGE_SIZE - 1);
  CHECK(strcmp(err.message + SHMESH_ERROR_MESSAGE_SIZE - 4, "...") == 0);
  /* Larger than max_message_bytes (16368 here): INVALID_ARGUMENT. */
  const size_t big_len = 1 << 20;
  char* big = calloc(big_len, 1);
  CHECK(big != NULL);
  CHECK_CODE(shmesh_node_send(alpha, "bravo", big, big_len, 100, &err), SHMESH_INVALID_ARGUMENT);
  free(big);

  /* Send batch: three in order. */
  const void* payloads[3] = {"m1", "m2", "m3"};
  const size_t lens[3] = {2, 2, 2};
  size_t sent = 0;
  CHECK_OK(shmesh_node_send_batch(alpha, "bravo", payloads, lens, 3, 1000, &sent, &err));
  CHECK(sent == 3);
  CHECK(inbox_wait(&bravo_in, 4));
  inbox_expect(&bravo_in, "alpha", "", "m3");
  CHECK_CODE(shmesh_node_send_batch(alpha, "bravo", NULL, lens, 3, 1000, &sent, &err),
             SHMESH_INVALID_ARGUMENT);
  CHECK(sent == 0);

  /* Broadcast: reaches alpha; the report names it. */
  shmesh_delivery_report* report = NULL;
  CHECK_OK(shmesh_node_broadcast(bravo, "to all", 6, 1000, &report, &err));
  CHECK(report != NULL && report->delivered_count == 1 && report->failed_count == 0);
  CHECK(strcmp(report->delivered_names[0], "alpha") == 0 && report->failed == NULL);
  shmesh_free(report);
  CHECK_OK(shmesh_node_receive(alpha, 5000, &m, &err));
  CHECK(m.payload_len == 6 && memcmp(m.payload, "to all", 6) == 0);
  shmesh_message_owned_free(&m);
  CHECK_OK(shmesh_node_broadcast(bravo, "again", 5, 1000, NULL, &err));
  CHECK_OK(shmesh_node_receive(alpha, 5000, &m, &err));
  shmesh_message_owned_free(&m);

  /* Topology: bytes (local view) and JSON (whole mesh) name both nodes. */
  void* topo = NULL;
  size_t topo_len = 0;
  CHECK_OK(shmesh_node_topology(alpha, 1, &topo, &topo_len, &err));
  CHECK(topo != NULL && topo_len > 0);
  CHECK(test_contains(topo, topo_len, "alpha") && test_contains(topo, topo_len, "bravo"));
  shmesh_free(topo);
  char* json = NULL;
  size_t json_len = 0;
  CHECK_OK(shmesh_node_topology_json(alpha, 0, &json, &json_len, &err));
  CHECK(json != NULL && json_len == strlen(json) && json[0] == '{');
  CHECK(strstr(json, "\"alpha\"") != NULL && strstr(json, "\"bravo\"") != NULL);
  shmesh_free(json);

  /* Topics: alpha publishes; bravo subscribes by callback and by pull. */
  shmesh_publisher* pub = NULL;
  shmesh_publisher_options popts;
  memset(&popts, 0, sizeof(popts));
  popts.history = 4;
  popts.reliability = SHMESH_RELIABLE;
  CHECK_OK(shmesh_node_advertise(alpha, "sensors/temp", &popts, &pub, &err));
  shmesh_publisher* bad = NULL;
  CHECK_CODE(shmesh_node_advertise(alpha, "sensors//temp", NULL, &bad, &err),
             SHMESH_INVALID_ARGUMENT);
  CHECK(bad == NULL);
  popts.reliability = (shmesh_reliability)7;
  CHECK_CODE(shmesh_node_advertise(alpha, "sensors/x", &popts, &bad, &err),
             SHMESH_INVALID_ARGUMENT);
  inbox topic_in;
  inbox_init(&topic_in);
  shmesh_subscription* sub_cb = NULL;
  shmesh_subscription* sub_pull = NULL;
  CHECK_OK(shmesh_node_subscribe(bravo, "sensors/*", on_message, &topic_in, &sub_cb, &err));
  CHECK_OK(shmesh_node_subscribe_pull(bravo, "sensors/**", 16, &sub_pull, &err));
  shmesh_subscription* bad_sub = NULL;
  CHECK_CODE(shmesh_node_subscribe(bravo, "sensors/*", NULL, NULL, &bad_sub, &err),
             SHMESH_INVALID_ARGUMENT);
  CHECK(bad_sub == NULL);
  CHECK(shmesh_subscription_ready_fd(sub_cb) == -1);
  CHECK_OK(shmesh_publisher_wait_for_subscribers(pub, 1, 5000, &err));
  CHECK(shmesh_publisher_matched(pub) == 1);
  CHECK_OK(shmesh_publisher_publish(pub, "21.5", 4, 1000, &report, &err));
  CHECK(report != NULL && report->delivered_count == 1 && report->failed_count == 0);
  CHECK(report->delivered_names == NULL);
  shmesh_free(report);
  CHECK(inbox_wait(&topic_in, 1));
  inbox_expect(&topic_in, "alpha", "sensors/temp", "21.5");
  pfd.fd = shmesh_subscription_ready_fd(sub_pull);
  pfd.revents = 0;
  CHECK(pfd.fd >= 0);
  CHECK(poll(&pfd, 1, 5000) == 1 && (pfd.revents & POLLIN));
  CHECK_OK(shmesh_subscription_receive(sub_pull, 0, &m, &err));
  CHECK(strcmp(m.from, "alpha") == 0 && strcmp(m.topic, "sensors/temp") == 0);
  CHECK(m.payload_len == 4 && memcmp(m.payload, "21.5", 4) == 0);
  shmesh_message_owned_free(&m);
  CHECK(shmesh_subscription_received(sub_pull) == 1);
  CHECK_CODE(shmesh_subscription_receive(sub_cb, 0, &m, &err), SHMESH_FAILED_PRECONDITION);
  CHECK_CODE(shmesh_subscription_receive(sub_pull, 0, &m, &err), SHMESH_DEADLINE_EXCEEDED);
  /* Unsubscribed: the callback gets nothing more; the pull form still does. */
  shmesh_subscription_unsubscribe(sub_cb);
  shmesh_subscription_unsubscribe(sub_cb);
  CHECK_OK(shmesh_publisher_publish(pub, "22.0", 4, 1000, NULL, &err));
  CHECK_OK(shmesh_subscription_receive(sub_pull, 5000, &m, &err));
  CHECK(m.payload_len == 4 && memcmp(m.payload, "22.0", 4) == 0);
  shmesh_message_owned_free(&m);
  CHECK(atomic_load(&topic_in.count) == 1);
  CHECK(shmesh_subscription_received(sub_cb) == 1);
  shmesh_subscription_destroy(sub_cb);

  /* A shared-ring publisher: one ring for all its subscribers, with
   * history; the pull subscription gets its messages in order. */
  shmesh_publisher* shared = NULL;
  popts.reliability = SHMESH_RELIABLE;
  popts.history = 2;
  CHECK_OK(shmesh_node_advertise_shared(alpha, "sensors/shared", &popts, &shared, &err));
  CHECK_CODE(shmesh_node_advertise_shared(alpha, NULL, &popts, &bad, &err), SHMESH_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "shmesh_node_advertise_shared") != NULL);
  CHECK(bad == NULL);
  CHECK_OK(shmesh_publisher_wait_for_subscribers(shared, 1, 5000, &err));
  CHECK_OK(shmesh_publisher_publish(shared, "s1", 2, 1000, &report, &err));
  CHECK(report != NULL && report->delivered_count == 1 && report->failed_count == 0);
  shmesh_free(report);
  CHECK_OK(shmesh_publisher_publish(shared, "s2", 2, 1000, NULL, &err));
  for (int i = 1; i <= 2; ++i) {
    char want[3] = {'s', (char)('0' + i), 0};
    CHECK_OK(shmesh_subscription_receive(sub_pull, 5000, &m, &err));
    CHECK(strcmp(m.from, "alpha") == 0 && strcmp(m.topic, "sensors/shared") == 0);
    CHECK(m.payload_len == 2 && memcmp(m.payload, want, 2) == 0);
    shmesh_message_owned_free(&m);
  }
  shmesh_publisher_destroy(shared);

  /* Services: bravo serves; alpha calls. */
  for (int i = 0; i < 500; ++i) {
    CHECK_OK(shmesh_node_servers(alpha, "text/upper", &names, &count, &err));
    if (count == 1) break;
    shmesh_free(names);
    names = NULL;
    test_sleep_ms(10);
  }
  CHECK(count == 1 && strcmp(names[0], "bravo") == 0);
  shmesh_free(names);
  void* resp = NULL;
  size_t resp_len = 0;
  CHECK_OK(shmesh_node_call(alpha, "text/upper", "hello", 5, 5000, NULL, &resp, &resp_len, &err));
  CHECK(resp_len == 5 && strcmp((char*)resp, "HELLO") == 0);
  shmesh_free(resp);
  CHECK_OK(shmesh_node_call(alpha, "text/upper", NULL, 0, 5000, "bravo", &resp, &resp_len, &err));
  CHECK(resp != NULL && resp_len == 0);
  shmesh_free(resp);
  CHECK_CODE(shmesh_node_call(alpha, "text/fail", "x", 1, 5000, NULL, &resp, &resp_len, &err),
             SHMESH_PERMISSION_DENIED);
  CHECK(resp == NULL && strstr(err.message, "no entry for alpha") != NULL);
  CHECK_CODE(shmesh_node_call(alpha, "no/such", "x", 1, 1000, NULL, &resp, &resp_len, &err),
             SHMESH_NOT_FOUND);
  CHECK(strstr(err.message, "no/such") != NULL);
  CHECK_CODE(shmesh_node_call(alpha, "text/upper", "x", 1, 1000, "charlie", &resp, &resp_len,
                              &err),
             SHMESH_NOT_FOUND);
  CHECK_CODE(shmesh_node_call(alpha, "text/bad", "x", 1, 5000, NULL, &resp, &resp_len, &err),
             SHMESH_UNKNOWN);
  CHECK(strstr(err.message, "99") != NULL);
  CHECK(shmesh_service_handled(upper) == 2 && shmesh_service_handled(fail) == 1);
  shmesh_service_destroy(bad_code);
  shmesh_service_destroy(fail);
  shmesh_service_destroy(upper);

  /* bravo goes away: alpha's peer-down callback runs. */
  shmesh_subscription_destroy(sub_pull);
  shmesh_node_destroy(bravo);
  for (int i = 0; i < 500 && atomic_load(&peer_downs) < 1; ++i) test_sleep_ms(10);
  CHECK(atomic_load(&peer_downs) == 1);

  /* A publisher that outlives its node fails cleanly. */
  shmesh_node_destroy(alpha);
  CHECK_CODE(shmesh_publisher_publish(pub, "x", 1, 0, NULL, &err), SHMESH_FAILED_PRECONDITION);
  shmesh_publisher_destroy(pub);
  pthread_mutex_destroy(&bravo_in.mu);
  pthread_mutex_destroy(&topic_in.mu);
}

/* The number of open descriptors (entries of /proc/self/fd, less the one
 * that lists them). */
static int open_fds(void) {
  DIR* d = opendir("/proc/self/fd");
  CHECK(d != NULL);
  int n = 0;
  while (readdir(d) != NULL) ++n;
  closedir(d);
  return n - 3; /* ".", ".." and d's own descriptor */
}

/* Out of descriptors (RLIMIT_NOFILE just above what is open): starting a
 * node fails with an error code, without crashing and without leaking. */
static void test_descriptor_limit(const char* dir, int open_now) {
  shmesh_error err;
  char text[1024];
  shmesh_node* node = NULL;
  test_config(text, sizeof(text), dir, "starved", NULL);
  CHECK_OK(shmesh_node_create_from_text(text, &node, &err));
  struct rlimit saved;
  CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  struct rlimit low = saved;
  low.rlim_cur = (rlim_t)open_now + 3;
  CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
  const shmesh_status_code code = shmesh_node_start(node, &err);
  CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
  printf("start with %d descriptors to spare: %s: %s\n", 3, shmesh_status_code_name(code),
         err.message);
  CHECK(code != SHMESH_OK && err.message[0] != '\0');
  shmesh_node_destroy(node);
  CHECK(open_fds() == open_now);
}

int main(void) {
  char dir[64];
  test_make_dir(dir, sizeof(dir));
  test_version_and_names();
  printf("ok version_and_names\n");
  /* gRPC keeps process-wide descriptors from the first server or channel
   * on: start and stop one node before counting. */
  shmesh_error err;
  char text[1024];
  shmesh_node* warm = NULL;
  test_config(text, sizeof(text), dir, "warm", NULL);
  CHECK_OK(shmesh_node_create_from_text(text, &warm, &err));
  CHECK_OK(shmesh_node_start(warm, &err));
  shmesh_node_destroy(warm);
  const int fds_before = open_fds();
  test_errors(dir);
  printf("ok errors\n");
  test_two_nodes(dir);
  printf("ok two_nodes\n");
  const int fds_after = open_fds();
  printf("descriptors: %d before, %d after\n", fds_before, fds_after);
  CHECK(fds_after == fds_before);
  test_descriptor_limit(dir, fds_after);
  printf("ok descriptor_limit\n");
  test_remove_dir(dir);
  return 0;
}
