// FrameRouter: where the receive thread sends what it does not handle
// itself: valid frames of kinds other than a plain message (topics,
// requests, responses) and control messages other than Goodbye, Ping and
// Pong (Interest). The node implements it by handing each kind to its
// component (mesh/pubsub, mesh/rpc, mesh/interest), so the Receiver knows
// none of them.
//
// Thread contract: every method is called on the receive thread only.
#ifndef SHMESH_MESH_DATAPLANE_FRAME_ROUTER_H_
#define SHMESH_MESH_DATAPLANE_FRAME_ROUTER_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/links/transport.h"
#include "mesh/message.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {

class FrameRouter {
 public:
  virtual ~FrameRouter() = default;
  // A valid frame (ParseFrame) of a kind other than kMessage, its payload
  // within max_message_bytes. False: its destination is full: the frame
  // stays first in `link`'s ring and the receiver stops draining that link
  // until it is woken (Receiver::Wake), then offers the frame again.
  // `pooled`, when set, holds `payload` (a publication that came as a pool
  // reference: `header` is then its kTopic header): keep a copy of it to
  // keep the bytes without copying them.
  virtual bool RouteFrame(const std::shared_ptr<Transport>& link, const FrameHeader& header,
                          absl::string_view payload, const std::shared_ptr<const SharedPayload>& pooled) = 0;
  // A publication read from a shared ring (shared_rings.h): `link`'s
  // publisher `channel` on `topic` (checked at the offer). False: the
  // destination is full, as for RouteFrame (the ring waits for a wake-up).
  virtual bool RouteShared(const std::shared_ptr<Transport>& link, uint32_t channel, absl::string_view topic,
                           absl::string_view payload) = 0;
  // A control message of a kind the receiver does not handle itself. OK:
  // handled. UNIMPLEMENTED: a kind nobody here knows (counted, ignored).
  // Any other error: the peer broke the protocol; the link fails.
  virtual absl::Status RouteControl(const std::shared_ptr<Transport>& link, const mesh::v1::LinkControl& msg) = 0;
  // The receive thread's set of links changed to `active`: forget state
  // kept for any other link.
  virtual void LinksChanged(absl::Span<const std::shared_ptr<Transport>> active) = 0;
};

}  // namespace mesh

#endif  // SHMESH_MESH_DATAPLANE_FRAME_ROUTER_H_
