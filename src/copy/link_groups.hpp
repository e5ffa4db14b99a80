// Hard links within the copy (-a, --preserve=links): the first name of a
// source inode copies the data; the others wait until it is in place and
// link to it, or copy the data themselves when it failed.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ringio::copy {

struct LinkGroup {
  int anchor_fd = -1;           // the root's destination parent, open while the root is copied
  std::string target_relative;  // the first copy, from the anchor
  std::string target_display;   // for messages
  bool complete = false;
  bool failed = false;
  std::vector<uint32_t> waiting;  // task slots to wake when complete or failed
};

class LinkGroups {
 public:
  enum class Role : uint8_t {
    owner,      // first name: copies the data
    wait,       // the owner is still copying: woken later
    link_now,   // the owner's copy is in place
    copy_data,  // the owner failed: copy the data as a file of its own
  };
  struct Joined {
    Role role;
    LinkGroup* group;  // nullptr for copy_data
  };
  Joined join(uint64_t device, uint64_t inode, uint32_t slot, int anchor_fd, const std::string& target_relative,
              const std::string& target_display);
  // The owner's copy is in place (complete) or failed: the waiters to wake.
  std::vector<uint32_t> settle(LinkGroup& group, bool complete);
  // A root is done: its anchor closes and its groups go.
  void forget_anchor(int anchor_fd);

 private:
  std::map<std::pair<uint64_t, uint64_t>, LinkGroup> groups_;
};

}  // namespace ringio::copy
