// Tiles smaller than a warp: each 8-thread tile owns a segment of 8 values and uses the tile's
// collectives (reduce with plus/greater/less, inclusive and exclusive scans, ballot, any, all and the four
// shuffles); a 16-thread tile split from a warp tile reports its place in its parent.
#include <cooperative_groups.h>
#include <cooperative_groups/reduce.h>
#include <cooperative_groups/scan.h>
namespace cg = cooperative_groups;

extern "C" __global__ void tile_collectives(int* seg_out, int* elem_out, const int* in, int n) {
    cg::thread_block block = cg::this_thread_block();
    cg::thread_block_tile<8> tile = cg::tiled_partition<8>(block);
    cg::thread_block_tile<32> warp = cg::tiled_partition<32>(block);
    cg::thread_block_tile<16> half_warp = cg::tiled_partition<16>(warp);

    int i = block.group_index().x * block.num_threads() + block.thread_rank();
    int v = i < n ? in[i] : 0;
    int total = cg::reduce(tile, v, cg::plus<int>());
    int top = cg::reduce(tile, v, cg::greater<int>());
    int bottom = cg::reduce(tile, v, cg::less<int>());
    unsigned odd = tile.ballot(v & 1);
    int any_negative = tile.any(v < 0);
    int all_positive = tile.all(v > 0);
    int inclusive = cg::inclusive_scan(tile, v);
    int exclusive = cg::exclusive_scan(tile, v);
    int next = tile.shfl(v, (tile.thread_rank() + 1) % tile.num_threads());
    int down = tile.shfl_down(v, 1);
    int up = tile.shfl_up(v, 2);
    int mirrored = tile.shfl_xor(v, 7);
    tile.sync();

    if (i < n) {
        int* e = elem_out + 6 * i;
        e[0] = inclusive;
        e[1] = exclusive;
        e[2] = next;
        e[3] = down + 1000 * up;
        e[4] = mirrored;
        e[5] = half_warp.meta_group_rank() * 1000 + half_warp.meta_group_size() * 100 + half_warp.thread_rank();
    }
    if (tile.thread_rank() == 0 && i < n) {
        int* s = seg_out + 6 * (i / 8);
        s[0] = total;
        s[1] = top;
        s[2] = bottom;
        s[3] = (int)odd;
        s[4] = any_negative;
        s[5] = all_positive;
    }
}
