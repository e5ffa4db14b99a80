#include "copy/link_groups.hpp"

namespace ringio::copy {

LinkGroups::Joined LinkGroups::join(uint64_t device, uint64_t inode, uint32_t slot, int anchor_fd,
                                    const std::string& target_relative, const std::string& target_display) {
  auto [it, inserted] = groups_.try_emplace(std::make_pair(device, inode));
  LinkGroup& group = it->second;
  if (inserted) {
    group.anchor_fd = anchor_fd;
    group.target_relative = target_relative;
    group.target_display = target_display;
    return {Role::owner, &group};
  }
  if (group.failed) return {Role::copy_data, nullptr};
  if (group.complete) return {Role::link_now, &group};
  group.waiting.push_back(slot);
  return {Role::wait, &group};
}

std::vector<uint32_t> LinkGroups::settle(LinkGroup& group, bool complete) {
  group.complete = complete;
  group.failed = !complete;
  std::vector<uint32_t> waiters;
  waiters.swap(group.waiting);
  return waiters;
}

void LinkGroups::forget_anchor(int anchor_fd) {
  for (auto it = groups_.begin(); it != groups_.end();)
    it = it->second.anchor_fd == anchor_fd ? groups_.erase(it) : std::next(it);
}

}  // namespace ringio::copy
