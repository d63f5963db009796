/* shmesh C API: a plain-C interface to mesh::Node (mesh/node.h), for
 * programs and language bindings that cannot use C++.
 *
 * A node joins a mesh of processes on one host, links to every peer through
 * shared-memory rings, and then sends messages, publishes and subscribes to
 * topics, and serves and calls services. This header is self-contained C
 * (C99 or later; C++ too): it is installed as <shmesh/shmesh.h>.
 *
 *   shmesh_error err;
 *   shmesh_node* node = NULL;
 *   if (shmesh_node_create_from_file("node.textproto", &node, &err) != SHMESH_OK) {
 *     fprintf(stderr, "%s\n", err.message);
 *     return 1;
 *   }
 *   shmesh_node_start(node, &err);
 *   shmesh_node_send(node, "other", "hi", 2, 1000, &err);
 *   shmesh_node_destroy(node);
 *
 * Conventions (every function below follows them unless it says otherwise):
 *
 * - Errors. A fallible function returns a shmesh_status_code (SHMESH_OK on
 *   success; the codes and their numbers are absl::StatusCode's, the
 *   canonical gRPC set) and takes a last `shmesh_error* err` that may be
 *   NULL. On failure, when err is not NULL, err->code is the returned code
 *   and err->message the error's text (what happened and what to do),
 *   NUL-terminated and truncated to fit. On success err->code is SHMESH_OK
 *   and err->message is "". There is no thread-local "last error": err is
 *   the caller's, so errors are thread-safe.
 * - NULL arguments that are required give SHMESH_INVALID_ARGUMENT naming the
 *   argument; they never crash. Out-parameters are set only on success
 *   (pointers are set to NULL on failure).
 * - Nothing throws: a C++ exception inside the library becomes
 *   SHMESH_INTERNAL (out of memory: SHMESH_RESOURCE_EXHAUSTED).
 * - Timeouts are relative, in milliseconds (int64_t timeout_ms): a negative
 *   value waits forever, 0 does not wait at all (a full ring fails at once
 *   with SHMESH_RESOURCE_EXHAUSTED; a receive with nothing queued fails with
 *   SHMESH_DEADLINE_EXCEEDED), a positive value waits at most that long
 *   (then SHMESH_DEADLINE_EXCEEDED).
 * - Ownership. Every buffer the library returns through an out-parameter is
 *   one allocation that the caller owns and frees with shmesh_free(); the
 *   exceptions are shmesh_message_owned (shmesh_message_owned_free) and the
 *   handles (each has its own *_destroy). Pointers the library passes to a
 *   callback (shmesh_message, shmesh_request, shmesh_peer_info and what
 *   they point to) are borrowed and valid only during that call: copy what
 *   you keep. Strings the caller passes in are copied when needed; the
 *   library keeps no pointer to caller memory except each callback's
 *   user_data, which must stay valid until the handle it was given to is
 *   destroyed (for node handlers: until shmesh_node_destroy returns).
 * - Threads. All functions are thread-safe, with the exceptions noted (the
 *   shmesh_node_set_*_handler functions must be called before
 *   shmesh_node_start), except that a *_destroy must not race with other
 *   calls on the same handle (destroying is the caller's last use of it). Callbacks run on the node's own threads, as in
 *   mesh/node.h: message, subscription and service callbacks on its receive
 *   thread (in order per sender, one at a time), peer and matched callbacks
 *   on its events thread (one at a time). They must return quickly, must not
 *   destroy the node, must not call shmesh_node_stop, and shmesh_node_call
 *   from a message, subscription or service handler fails at once with
 *   FAILED_PRECONDITION (the receive thread is what delivers responses).
 */
#ifndef SHMESH_SHMESH_H_
#define SHMESH_SHMESH_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version */

/* SHMESH_VERSION ("MAJOR.MINOR.PATCH") and SHMESH_VERSION_MAJOR/MINOR/PATCH,
 * of the headers compiled against (next to this file when installed). */
#include "mesh/version.h"

/* The library's version, "MAJOR.MINOR.PATCH" (static storage; never free). */
const char* shmesh_version(void);

/* ------------------------------------------------------------------------ */
/* Errors */

/* The canonical status codes, with absl::StatusCode's numbers. */
typedef enum shmesh_status_code {
  SHMESH_OK = 0,
  SHMESH_CANCELLED = 1,
  SHMESH_UNKNOWN = 2,
  SHMESH_INVALID_ARGUMENT = 3,
  SHMESH_DEADLINE_EXCEEDED = 4,
  SHMESH_NOT_FOUND = 5,
  SHMESH_ALREADY_EXISTS = 6,
  SHMESH_PERMISSION_DENIED = 7,
  SHMESH_RESOURCE_EXHAUSTED = 8,
  SHMESH_FAILED_PRECONDITION = 9,
  SHMESH_ABORTED = 10,
  SHMESH_OUT_OF_RANGE = 11,
  SHMESH_UNIMPLEMENTED = 12,
  SHMESH_INTERNAL = 13,
  SHMESH_UNAVAILABLE = 14,
  SHMESH_DATA_LOSS = 15,
  SHMESH_UNAUTHENTICATED = 16,
  /* Not a code: makes the enum 32 bits wide, so that any int a caller
   * stores in it (e.g. a handler's bad return value) is representable. */
  SHMESH_STATUS_CODE_MAX_ENUM_ = 0x7FFFFFFF
} shmesh_status_code;

/* The size of shmesh_error::message, the NUL included. Longer messages are
 * truncated (ending in "..."). */
#define SHMESH_ERROR_MESSAGE_SIZE 1024

/* An error as returned through a `shmesh_error* err` argument. Caller-owned
 * (usually on the stack); needs no initialization and no cleanup. */
typedef struct shmesh_error {
  shmesh_status_code code;
  char message[SHMESH_ERROR_MESSAGE_SIZE];
} shmesh_error;

/* The code's name, e.g. "NOT_FOUND" ("UNKNOWN_CODE" for a number outside
 * 0..16). Static storage; never free. */
const char* shmesh_status_code_name(shmesh_status_code code);

/* Frees a buffer the library returned (see "Ownership" above). NULL is a
 * no-op. */
void shmesh_free(void* p);

/* ------------------------------------------------------------------------ */
/* Handles (opaque). */

typedef struct shmesh_node shmesh_node;
typedef struct shmesh_publisher shmesh_publisher;
typedef struct shmesh_subscription shmesh_subscription;
typedef struct shmesh_service shmesh_service;

/* ------------------------------------------------------------------------ */
/* Messages and peers */

/* A received message, borrowed: passed to a callback and valid only during
 * that call. `payload` points into shared memory the sender can still write:
 * copy before validating what you parse. `from` and `topic` are
 * NUL-terminated; `topic` is "" for shmesh_node_send messages. */
typedef struct shmesh_message {
  const char* from;
  const char* topic;
  const void* payload;
  size_t payload_len;
} shmesh_message;

/* A received message, owned by the caller: filled by the receive functions
 * and released with shmesh_message_owned_free (not shmesh_free). All three
 * pointers are non-NULL once filled; `payload` has payload_len bytes plus a
 * NUL after them (not counted) for convenience. */
typedef struct shmesh_message_owned {
  char* from;
  char* topic;
  void* payload;
  size_t payload_len;
} shmesh_message_owned;

/* Frees what a receive function put in *msg and zeroes it. NULL, a zeroed
 * struct or a second call are no-ops. */
void shmesh_message_owned_free(shmesh_message_owned* msg);

/* A peer, as passed to the peer callbacks (borrowed; valid during the call). */
typedef struct shmesh_peer_info {
  const char* name;
  uint64_t id;
  int32_t pid;
  /* Time this node spent on the link handshake (diagnostics only). */
  int64_t handshake_us;
} shmesh_peer_info;

/* One peer (or subscriber) that a broadcast or publish did not reach, and
 * why: the status a send to it would have returned. */
typedef struct shmesh_failure {
  const char* name;
  shmesh_status_code code;
  const char* message;
} shmesh_failure;

/* What a broadcast or publish did. Returned as ONE allocation (every
 * pointer inside points into it): free it with a single shmesh_free().
 * `delivered_names` lists the peers reached (broadcast only; NULL for a
 * publish, where only delivered_count is known). */
typedef struct shmesh_delivery_report {
  size_t delivered_count;
  const char* const* delivered_names;
  size_t failed_count;
  const shmesh_failure* failed;
} shmesh_delivery_report;

/* Callback types. `user_data` is what was registered with the callback. */
typedef void (*shmesh_message_fn)(const shmesh_message* msg, void* user_data);
typedef void (*shmesh_peer_fn)(const shmesh_peer_info* peer, void* user_data);
/* `unresponsive` is 1 when the peer stopped running, 0 when it runs again. */
typedef void (*shmesh_peer_unresponsive_fn)(const shmesh_peer_info* peer, int unresponsive,
                                            void* user_data);

/* ------------------------------------------------------------------------ */
/* Node lifecycle */

/* Creates a stopped node from a config file (protobuf text format, or JSON
 * when the path ends in ".json"; fields: mesh/v1/config.proto next to this header). On
 * success *out is a new node the caller owns (shmesh_node_destroy).
 * NOT_FOUND / PERMISSION_DENIED for the file, INVALID_ARGUMENT naming the
 * line and field for a bad config. */
shmesh_status_code shmesh_node_create_from_file(const char* path, shmesh_node** out,
                                                shmesh_error* err);

/* As shmesh_node_create_from_file, from config text in protobuf text format
 * (e.g. "name: \"a\" run_dir: \"/tmp/m\""); errors name "<text>" and the
 * line:column. */
shmesh_status_code shmesh_node_create_from_text(const char* config_text, shmesh_node** out,
                                                shmesh_error* err);

/* Starts the node (servers, link socket, joining through the seeds); returns
 * without waiting for peers (see shmesh_node_wait_for_peers). ALREADY_EXISTS
 * if a live node already uses the name in the run directory,
 * FAILED_PRECONDITION if called twice. */
shmesh_status_code shmesh_node_start(shmesh_node* node, shmesh_error* err);

/* Leaves the mesh and stops the node. Idempotent; NULL is a no-op. Must not
 * be called from a callback. */
void shmesh_node_stop(shmesh_node* node);

/* Stops the node (if running) and frees it. NULL is a no-op. Publishers,
 * subscriptions and services of the node may be destroyed before or after
 * it (afterwards they fail with FAILED_PRECONDITION); their callbacks are
 * never called once the node is destroyed. Must not be called from a
 * callback. */
void shmesh_node_destroy(shmesh_node* node);

/* The node's name: borrowed, valid until shmesh_node_destroy. NULL for a
 * NULL node. */
const char* shmesh_node_name(const shmesh_node* node);

/* The node's id (0 for a NULL node). */
uint64_t shmesh_node_id(const shmesh_node* node);

/* The node's gRPC address (e.g. "unix:/run/m/a.grpc", with the real port if
 * it listens on TCP port 0): *out is a NUL-terminated string the caller
 * frees with shmesh_free. */
shmesh_status_code shmesh_node_grpc_address(const shmesh_node* node, char** out,
                                            shmesh_error* err);

/* ------------------------------------------------------------------------ */
/* Sending */

/* Sends `len` bytes to peer `peer`, waiting for ring space up to timeout_ms.
 * `payload` may be NULL when len is 0. NOT_FOUND if there is no link to
 * `peer`; INVALID_ARGUMENT if too large or to this node itself;
 * RESOURCE_EXHAUSTED (timeout 0) / DEADLINE_EXCEEDED when the ring stayed
 * full; UNAVAILABLE if the link went down; FAILED_PRECONDITION if the node
 * is not running. Messages to one peer arrive in the order sent. */
shmesh_status_code shmesh_node_send(shmesh_node* node, const char* peer, const void* payload,
                                    size_t len, int64_t timeout_ms, shmesh_error* err);

/* Sends `count` messages (payloads[i] of lens[i] bytes) to `peer` in order,
 * waking the peer once: the way to stream small messages. *out_sent (may be
 * NULL) is how many were sent, a prefix: all of them, or fewer if the ring
 * stayed full until the timeout after some were sent (then the code is
 * SHMESH_OK; call again with the rest). Errors, when none was sent: as
 * shmesh_node_send. */
shmesh_status_code shmesh_node_send_batch(shmesh_node* node, const char* peer,
                                          const void* const* payloads, const size_t* lens,
                                          size_t count, int64_t timeout_ms, size_t* out_sent,
                                          shmesh_error* err);

/* Sends the bytes to every linked peer; full peers are waited for in turn
 * until the timeout. *out_report (may be NULL) says who got it and who did
 * not, with why; free it with shmesh_free. An error only if no peer could
 * be reached (the message names each), INVALID_ARGUMENT for an oversized
 * payload, FAILED_PRECONDITION when not running. An empty mesh is OK. */
shmesh_status_code shmesh_node_broadcast(shmesh_node* node, const void* payload, size_t len,
                                         int64_t timeout_ms, shmesh_delivery_report** out_report,
                                         shmesh_error* err);

/* ------------------------------------------------------------------------ */
/* Receiving */

/* Sets the callback that gets every message sent to this node with
 * shmesh_node_send / batch / broadcast (on the receive thread; `msg` is
 * borrowed for the call). REQUIRES: before shmesh_node_start
 * (FAILED_PRECONDITION afterwards). Without one, messages queue for
 * shmesh_node_receive. `fn` NULL: INVALID_ARGUMENT. */
shmesh_status_code shmesh_node_set_message_handler(shmesh_node* node, shmesh_message_fn fn,
                                                   void* user_data, shmesh_error* err);

/* Takes the next queued message into *out (caller-owned struct; release with
 * shmesh_message_owned_free), waiting up to timeout_ms. *out is overwritten,
 * not freed: free a previous message first. DEADLINE_EXCEEDED
 * if none came, FAILED_PRECONDITION with a message handler set, CANCELLED
 * once the node is stopped. */
shmesh_status_code shmesh_node_receive(shmesh_node* node, int64_t timeout_ms,
                                       shmesh_message_owned* out, shmesh_error* err);

/* A descriptor readable while shmesh_node_receive has a message queued, for
 * poll/epoll. Borrowed: owned by the node, valid until shmesh_node_destroy;
 * never close it. -1 for a NULL node. */
int shmesh_node_receive_fd(const shmesh_node* node);

/* ------------------------------------------------------------------------ */
/* Peers */

/* Callbacks for a link to a peer coming up, going down (the peer left or
 * died), and the peer's process stopping/resuming (unresponsive 1/0). Run
 * on the node's events thread, one at a time, a peer's up before its down;
 * they may call any function but shmesh_node_stop/destroy. REQUIRES: before
 * shmesh_node_start (FAILED_PRECONDITION afterwards). */
shmesh_status_code shmesh_node_set_peer_up_handler(shmesh_node* node, shmesh_peer_fn fn,
                                                   void* user_data, shmesh_error* err);
shmesh_status_code shmesh_node_set_peer_down_handler(shmesh_node* node, shmesh_peer_fn fn,
                                                     void* user_data, shmesh_error* err);
shmesh_status_code shmesh_node_set_peer_unresponsive_handler(shmesh_node* node,
                                                             shmesh_peer_unresponsive_fn fn,
                                                             void* user_data, shmesh_error* err);

/* The names of the linked peers, sorted. *out_names is ONE allocation: an
 * array of *out_count strings followed by a NULL entry (the strings live in
 * the same block); free it with a single shmesh_free. out_count may be
 * NULL. */
shmesh_status_code shmesh_node_peers(const shmesh_node* node, char*** out_names,
                                     size_t* out_count, shmesh_error* err);

/* Waits until at least n peers are linked: DEADLINE_EXCEEDED otherwise. */
shmesh_status_code shmesh_node_wait_for_peers(shmesh_node* node, size_t n, int64_t timeout_ms,
                                              shmesh_error* err);

/* The topology (mesh.v1.TopologySnapshot, mesh/v1/mesh.proto next to this header) as
 * serialized protobuf bytes: *out (freed with shmesh_free) holds *out_len
 * bytes (both out-parameters required). With local_only 0, gathers every member's links over gRPC (members
 * that do not answer in time leave their links marked unconfirmed). */
shmesh_status_code shmesh_node_topology(shmesh_node* node, int local_only, void** out,
                                        size_t* out_len, shmesh_error* err);

/* The same snapshot as JSON (protobuf's JSON mapping): *out is a
 * NUL-terminated string freed with shmesh_free; out_len (may be NULL) gets
 * its length without the NUL. */
shmesh_status_code shmesh_node_topology_json(shmesh_node* node, int local_only, char** out,
                                             size_t* out_len, shmesh_error* err);

/* ------------------------------------------------------------------------ */
/* Topics (see mesh/topic.h for names, patterns, ordering) */

typedef enum shmesh_reliability {
  /* A full subscriber is waited for until the publish timeout; nothing is
   * lost while both nodes live. */
  SHMESH_RELIABLE = 0,
  /* A full subscriber is skipped at once (reported in the report). */
  SHMESH_BEST_EFFORT = 1,
  /* Not a value: makes the enum 32 bits wide (see shmesh_status_code). */
  SHMESH_RELIABILITY_MAX_ENUM_ = 0x7FFFFFFF
} shmesh_reliability;

/* Called on the events thread with the new number of matched subscribers
 * whenever it changes. */
typedef void (*shmesh_matched_fn)(size_t matched, void* user_data);

/* Publisher options. Zero-initialize (or pass NULL for all defaults). */
typedef struct shmesh_publisher_options {
  /* Keep the last `history` messages for nodes that match later (0: none;
   * at most 4096). */
  size_t history;
  shmesh_reliability reliability;
  /* Optional (NULL: none). */
  shmesh_matched_fn on_matched;
  void* on_matched_user_data;
} shmesh_publisher_options;

/* Advertises `topic`: *out is a new publisher the caller owns
 * (shmesh_publisher_destroy). `options` may be NULL (defaults).
 * INVALID_ARGUMENT names what is wrong with the topic or options. May be
 * called before or after shmesh_node_start. */
shmesh_status_code shmesh_node_advertise(shmesh_node* node, const char* topic,
                                         const shmesh_publisher_options* options,
                                         shmesh_publisher** out, shmesh_error* err);

/* As shmesh_node_advertise, for a publisher with one shared ring for all
 * its subscribers (mesh::PublisherOptions::shared_ring, mesh/topic.h): each
 * message is written once however many subscribe, and subscribers copy it
 * out. A subscriber that holds the ring past a publish's timeout is evicted
 * (listed in the report with DEADLINE_EXCEEDED) and offered the ring again
 * at the next publish. Payloads of at most half the node's
 * ring_capacity_bytes (larger: INVALID_ARGUMENT). */
shmesh_status_code shmesh_node_advertise_shared(shmesh_node* node, const char* topic,
                                                const shmesh_publisher_options* options,
                                                shmesh_publisher** out, shmesh_error* err);

/* Publishes the bytes to every node with a matching subscription (first to
 * every ring with room, then, reliable, to the full ones until the
 * timeout). *out_report (may be NULL; freed with shmesh_free) counts the
 * subscribers reached and lists the others. OK when nobody subscribes.
 * Errors: INVALID_ARGUMENT (too large), FAILED_PRECONDITION (node not
 * running or destroyed), and when no subscriber could be reached the first
 * one's error. */
shmesh_status_code shmesh_publisher_publish(shmesh_publisher* pub, const void* payload,
                                            size_t len, int64_t timeout_ms,
                                            shmesh_delivery_report** out_report,
                                            shmesh_error* err);

/* The number of linked nodes with a matching subscription (0 for NULL). */
size_t shmesh_publisher_matched(const shmesh_publisher* pub);

/* Waits until at least n subscribers match: DEADLINE_EXCEEDED otherwise. */
shmesh_status_code shmesh_publisher_wait_for_subscribers(shmesh_publisher* pub, size_t n,
                                                         int64_t timeout_ms, shmesh_error* err);

/* Stops publishing and frees the publisher. NULL is a no-op. */
void shmesh_publisher_destroy(shmesh_publisher* pub);

/* Subscribes to `pattern` (a topic name whose segments may also be the
 * wildcards '*' and '**': see mesh/topic.h): every matching message
 * goes to `fn` on the receive thread (msg->topic says which topic). *out is
 * a new subscription the caller owns (shmesh_subscription_destroy).
 * INVALID_ARGUMENT for a bad pattern or a NULL fn. */
shmesh_status_code shmesh_node_subscribe(shmesh_node* node, const char* pattern,
                                         shmesh_message_fn fn, void* user_data,
                                         shmesh_subscription** out, shmesh_error* err);

/* The pull form: messages queue (at most queue_depth; 0 means the default,
 * 1024; at most 1<<20) for shmesh_subscription_receive. A full queue holds
 * the publishers back (nothing lost). */
shmesh_status_code shmesh_node_subscribe_pull(shmesh_node* node, const char* pattern,
                                              size_t queue_depth, shmesh_subscription** out,
                                              shmesh_error* err);

/* Pull form: the next message into *out (release with
 * shmesh_message_owned_free; overwritten, not freed), waiting up to
 * timeout_ms. DEADLINE_EXCEEDED if
 * none came; FAILED_PRECONDITION for a callback subscription; CANCELLED once
 * the node stopped. */
shmesh_status_code shmesh_subscription_receive(shmesh_subscription* sub, int64_t timeout_ms,
                                               shmesh_message_owned* out, shmesh_error* err);

/* Pull form: a descriptor readable while a message is queued (borrowed:
 * owned by the subscription, valid until shmesh_subscription_destroy; never
 * close it). -1 for a callback subscription or NULL. */
int shmesh_subscription_ready_fd(const shmesh_subscription* sub);

/* Messages delivered to this subscription so far (0 for NULL). */
uint64_t shmesh_subscription_received(const shmesh_subscription* sub);

/* Unsubscribes now and keeps the handle (its counter stays readable): once
 * this returns the callback is not running and is never called again
 * (allowed from inside the callback). Idempotent; NULL is a no-op. */
void shmesh_subscription_unsubscribe(shmesh_subscription* sub);

/* Unsubscribes and frees the subscription. NULL is a no-op. Must not be
 * called from inside its own callback (use shmesh_subscription_unsubscribe
 * there, and destroy it later). */
void shmesh_subscription_destroy(shmesh_subscription* sub);

/* ------------------------------------------------------------------------ */
/* Services (see mesh/rpc.h) */

/* A request as a service handler sees it, borrowed for the call. `payload`
 * points into shared memory: copy before parsing. */
typedef struct shmesh_request {
  const char* service;
  const char* from;
  const void* payload;
  size_t payload_len;
} shmesh_request;

/* Where a service handler writes its answer; valid only during the handler
 * call (the library owns it). */
typedef struct shmesh_responder shmesh_responder;

/* Appends `len` bytes to the response (copied). `data` may be NULL when len
 * is 0. INVALID_ARGUMENT for a NULL responder. */
shmesh_status_code shmesh_responder_write(shmesh_responder* r, const void* data, size_t len,
                                          shmesh_error* err);

/* Sets the error message the caller gets when the handler returns a code
 * other than SHMESH_OK (copied; the last call wins). */
shmesh_status_code shmesh_responder_set_error_message(shmesh_responder* r, const char* message,
                                                      shmesh_error* err);

/* A service handler, run on the server's receive thread. Return SHMESH_OK
 * to send the bytes written with shmesh_responder_write (possibly none), or
 * another code to fail the call with that code and the message set with
 * shmesh_responder_set_error_message (or a default one naming the
 * service). A code outside 0..16 fails the call with SHMESH_UNKNOWN. */
typedef shmesh_status_code (*shmesh_service_fn)(const shmesh_request* req, shmesh_responder* resp,
                                                void* user_data);

/* Serves `service` with `fn`: *out is a new registration the caller owns
 * (shmesh_service_destroy). ALREADY_EXISTS if this node already serves it;
 * INVALID_ARGUMENT for a bad name or NULL fn. Before or after start. */
shmesh_status_code shmesh_node_serve(shmesh_node* node, const char* service, shmesh_service_fn fn,
                                     void* user_data, shmesh_service** out, shmesh_error* err);

/* Requests answered so far (0 for NULL). */
uint64_t shmesh_service_handled(const shmesh_service* svc);

/* Stops serving and frees the registration: once it returns the handler is
 * not running and is never called again. NULL is a no-op. Must not be
 * called from inside its own handler. */
void shmesh_service_destroy(shmesh_service* svc);

/* Calls `service` and waits up to timeout_ms for the response. `server`
 * names the node to call, or NULL / "" to rotate over the nodes that serve
 * it. On success *out_response is the response (freed with shmesh_free;
 * never NULL, with a NUL after the *out_len bytes for convenience).
 * NOT_FOUND if no linked node serves it; UNAVAILABLE if the server's link
 * went down mid-call; DEADLINE_EXCEEDED; the handler's own code and message
 * when it failed. Must not be called from a service handler. */
shmesh_status_code shmesh_node_call(shmesh_node* node, const char* service, const void* request,
                                    size_t request_len, int64_t timeout_ms, const char* server,
                                    void** out_response, size_t* out_len, shmesh_error* err);

/* The linked nodes that serve `service`, sorted: same layout and ownership
 * as shmesh_node_peers (one block, freed with one shmesh_free). */
shmesh_status_code shmesh_node_servers(const shmesh_node* node, const char* service,
                                       char*** out_names, size_t* out_count, shmesh_error* err);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SHMESH_SHMESH_H_ */
