#include "mesh/loan.h"

#include <utility>

#include "mesh/pool/send_pool.h"

namespace mesh {

Loan::Loan() = default;
Loan::Loan(Loan&&) noexcept = default;
Loan& Loan::operator=(Loan&&) noexcept = default;
Loan::~Loan() = default;
Loan::Loan(pool::BlockHandle block) : block_(std::make_unique<pool::BlockHandle>(std::move(block))) {}

uint8_t* Loan::data() { return block_ == nullptr ? nullptr : block_->data(); }
const uint8_t* Loan::data() const { return block_ == nullptr ? nullptr : block_->data(); }
size_t Loan::size() const { return block_ == nullptr ? 0 : block_->size(); }
size_t Loan::capacity() const { return block_ == nullptr ? 0 : block_->capacity(); }
void Loan::Consume() { block_.reset(); }
void Loan::resize(size_t n) {
  if (block_ != nullptr) block_->set_size(n);
}

}  // namespace mesh
