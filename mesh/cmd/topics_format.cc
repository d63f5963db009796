#include "mesh/cmd/topics_format.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "mesh/cmd/text_table.h"
#include "mesh/cmd/topology_format.h"
#include "mesh/pubsub/topic_name.h"

namespace mesh {
namespace cmd {
namespace {

using ::mesh::v1::NodeTopics;
using ::mesh::v1::ServiceInfo;
using ::mesh::v1::TopicTraffic;
using ::mesh::v1::TopologySnapshot;

// Peer-supplied strings go into a terminal: keep them on one line and
// printable.
std::string Printable(absl::string_view s) { return absl::CHexEscape(s); }

std::string Plural(size_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

const TopicTraffic* Find(
    const google::protobuf::RepeatedPtrField<TopicTraffic>& list,
    absl::string_view topic) {
  for (const TopicTraffic& t : list) {
    if (t.topic() == topic) return &t;
  }
  return nullptr;
}

// The snapshot's NodeTopics sorted by node (the node sorts them already;
// sorting again keeps the output stable whatever a peer sends).
std::vector<const NodeTopics*> SortedNodes(const TopologySnapshot& s) {
  std::vector<const NodeTopics*> nodes;
  for (const NodeTopics& n : s.topics()) nodes.push_back(&n);
  std::stable_sort(nodes.begin(), nodes.end(),
                   [](const NodeTopics* a, const NodeTopics* b) {
                     return a->node() < b->node();
                   });
  return nodes;
}

std::string TopicTable(const std::vector<const NodeTopics*>& nodes) {
  std::set<std::string> topics;
  for (const NodeTopics* n : nodes) {
    for (const TopicTraffic& t : n->published()) topics.insert(t.topic());
    for (const TopicTraffic& t : n->received()) topics.insert(t.topic());
  }
  if (topics.empty()) return "(no topics)\n";
  TextTable table({"TOPIC", "NODE", "ROLE", "PATTERNS", "MSGS", "BYTES", "PEERS"},
                  {false, false, false, false, true, true, true});
  for (const std::string& topic : topics) {
    for (const NodeTopics* n : nodes) {
      if (const TopicTraffic* pub = Find(n->published(), topic)) {
        table.AddRow({Printable(topic), Printable(n->node()), "pub", "-",
                      absl::StrCat(pub->messages()), absl::StrCat(pub->bytes()),
                      absl::StrCat(pub->peers())});
      }
    }
    for (const NodeTopics* n : nodes) {
      std::vector<std::string> patterns;
      for (const TopicTraffic& sub : n->subscribed()) {
        if (pubsub::PatternMatches(sub.topic(), topic)) {
          patterns.push_back(Printable(sub.topic()));
        }
      }
      const TopicTraffic* got = Find(n->received(), topic);
      if (got == nullptr && patterns.empty()) continue;
      table.AddRow({Printable(topic), Printable(n->node()), "sub",
                    patterns.empty() ? "-" : absl::StrJoin(patterns, ","),
                    absl::StrCat(got != nullptr ? got->messages() : 0),
                    absl::StrCat(got != nullptr ? got->bytes() : 0),
                    absl::StrCat(got != nullptr ? got->peers() : 0)});
    }
  }
  return table.Render();
}

std::string SubscriptionTable(const std::vector<const NodeTopics*>& nodes) {
  std::vector<std::pair<const TopicTraffic*, const NodeTopics*>> rows;
  for (const NodeTopics* n : nodes) {
    for (const TopicTraffic& sub : n->subscribed()) rows.push_back({&sub, n});
  }
  if (rows.empty()) return "(no subscriptions)\n";
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return a.first->topic() < b.first->topic();
  });
  TextTable table({"PATTERN", "NODE", "MSGS", "BYTES", "PUBLISHERS"},
                  {false, false, true, true, true});
  for (const auto& [sub, n] : rows) {
    table.AddRow({Printable(sub->topic()), Printable(n->node()),
                  absl::StrCat(sub->messages()), absl::StrCat(sub->bytes()),
                  absl::StrCat(sub->peers())});
  }
  return table.Render();
}

std::string ServiceTable(const std::vector<const NodeTopics*>& nodes) {
  std::vector<std::pair<const ServiceInfo*, const NodeTopics*>> rows;
  for (const NodeTopics* n : nodes) {
    for (const ServiceInfo& s : n->served()) rows.push_back({&s, n});
  }
  if (rows.empty()) return "(no services)\n";
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return a.first->service() < b.first->service();
  });
  TextTable table({"SERVICE", "SERVER", "REQUESTS"}, {false, false, true});
  for (const auto& [service, n] : rows) {
    table.AddRow({Printable(service->service()), Printable(n->node()),
                  absl::StrCat(service->requests())});
  }
  return table.Render();
}

}  // namespace

bool HasTopics(const TopologySnapshot& s) {
  for (const NodeTopics& n : s.topics()) {
    if (n.published_size() > 0 || n.subscribed_size() > 0 ||
        n.received_size() > 0 || n.served_size() > 0) {
      return true;
    }
  }
  return false;
}

std::string TopicsTables(const TopologySnapshot& s) {
  const std::vector<const NodeTopics*> nodes = SortedNodes(s);
  return absl::StrCat(TopicTable(nodes), "\n", SubscriptionTable(nodes), "\n",
                      ServiceTable(nodes));
}

std::string FormatTopicsTable(const TopologySnapshot& s) {
  std::set<std::string> topics;
  size_t subscriptions = 0;
  size_t services = 0;
  for (const NodeTopics& n : s.topics()) {
    for (const TopicTraffic& t : n.published()) topics.insert(t.topic());
    for (const TopicTraffic& t : n.received()) topics.insert(t.topic());
    subscriptions += n.subscribed_size();
    services += n.served_size();
  }
  return absl::StrCat("reporter ", Printable(s.reporter()), " at ",
                      FormatTimestamp(s.taken()), ": ",
                      Plural(topics.size(), "topic", "topics"), ", ",
                      Plural(subscriptions, "subscription", "subscriptions"),
                      ", ", Plural(services, "service", "services"), "\n",
                      TopicsTables(s));
}

std::vector<std::string> SubscribersOf(const TopologySnapshot& s,
                                       absl::string_view topic,
                                       absl::string_view self) {
  std::set<std::string> out;
  for (const NodeTopics& n : s.topics()) {
    if (n.node() == self) continue;
    for (const TopicTraffic& sub : n.subscribed()) {
      if (pubsub::PatternMatches(sub.topic(), topic)) out.insert(n.node());
    }
  }
  return {out.begin(), out.end()};
}

std::vector<std::string> ServersOf(const TopologySnapshot& s,
                                   absl::string_view service) {
  std::set<std::string> out;
  for (const NodeTopics& n : s.topics()) {
    for (const ServiceInfo& info : n.served()) {
      if (info.service() == service) out.insert(n.node());
    }
  }
  return {out.begin(), out.end()};
}

std::string TopicMessageLine(absl::string_view topic, absl::string_view from,
                             absl::string_view payload) {
  return absl::StrCat(absl::CHexEscape(topic), " ", absl::CHexEscape(from),
                      " ", absl::CHexEscape(payload), "\n");
}

}  // namespace cmd
}  // namespace mesh
