// switch-fcontext: one context switch of boost.context's fcontext (the
// assembly switch under Boost.Coroutine2 and Boost.Fiber), the peer of coil's
// switch_ns. Two contexts bounce control with jump_fcontext; the figure is the
// round trip / 2, best of 5 runs, as coil-bench-runtime measures its own.
//
//   switch-fcontext            prints "fcontext switch_ns X"
#include <boost/context/detail/fcontext.hpp>

#include <chrono>
#include <cstdio>
#include <vector>

namespace bc = boost::context::detail;

static void bounce(bc::transfer_t t) {
    for (;;)
        t = bc::jump_fcontext(t.fctx, nullptr);
}

int main() {
    const long n = 10000000;
    std::vector<char> stack(64 * 1024);
    double best = 1e9;
    for (int run = 0; run < 5; run++) {
        bc::fcontext_t other = bc::make_fcontext(stack.data() + stack.size(), stack.size(), bounce);
        auto t0 = std::chrono::steady_clock::now();
        for (long i = 0; i < n; i++)
            other = bc::jump_fcontext(other, nullptr).fctx;
        std::chrono::duration<double, std::nano> el = std::chrono::steady_clock::now() - t0;
        double ns = el.count() / (2.0 * n);
        if (ns < best) best = ns;
    }
    std::printf("fcontext switch_ns %.2f\n", best);
    return 0;
}
