#include "switchboard/workers/webhooks/circuit_breaker.hpp"

#include <algorithm>

namespace sb {

CircuitBreaker::State CircuitBreaker::state(Clock::time_point now) const {
  if (state_ == State::Open && now >= open_until_) return State::HalfOpen;
  return state_;
}

bool CircuitBreaker::allow(Clock::time_point now) {
  switch (state(now)) {
    case State::Closed:
      return true;
    case State::Open:
      return false;
    case State::HalfOpen:
      if (probe_in_flight_) return false;
      state_ = State::HalfOpen;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::record(bool success, Clock::time_point now) {
  if (state_ == State::HalfOpen || (state_ == State::Open && now >= open_until_)) {
    probe_in_flight_ = false;
    if (success) {
      state_ = State::Closed;
      cool_down_ = s_.cool_down;
      recent_.clear();
    } else {
      cool_down_ = std::min(cool_down_ * 2, s_.max_cool_down);
      state_ = State::Open;
      open_until_ = now + cool_down_;
    }
    return;
  }
  recent_.push_back(!success);
  if (recent_.size() > s_.window) recent_.pop_front();
  const auto failures = static_cast<std::size_t>(std::count(recent_.begin(), recent_.end(), true));
  if (state_ == State::Closed && recent_.size() >= s_.min_attempts &&
      static_cast<double>(failures) >= s_.failure_ratio * static_cast<double>(recent_.size())) {
    state_ = State::Open;
    open_until_ = now + cool_down_;
  }
}

}  // namespace sb
