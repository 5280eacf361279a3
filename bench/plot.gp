# plot.gp - decode tokens/s against the bandwidth bound, one pair of bars per model.
#   gnuplot -e "datafile='build/bench/plot.dat'; outfile='docs/performance.png'; plottitle='...'; n=8" bench/plot.gp
# datafile columns: "label" measured_tokens_per_s bound_tokens_per_s ratio_to_ceiling (bench/report.py writes
# it; the ratio is the median of the per-repeat ratios, the label on each bar); optional ymax: the y range's top
set terminal pngcairo size 1000,520 font "sans,10"
set output outfile
set title plottitle
set ylabel "decode tokens/s (batch 1)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
if (exists("ymax")) set yrange [0:ymax]  # optional: headroom for the key
set xrange [-0.6:n - 0.4]
set key top right
set xtics rotate by -25 scale 0
set bmargin 7
plot datafile using 2:xtic(1) title "measured" lc rgb "#2f6db5", \
     "" using 3 title "bound: ceiling / bytes per token" lc rgb "#bbbbbb", \
     "" using ($0 - 0.15):2:(sprintf("%.0f%%", 100 * $4)) with labels offset 0,0.7 font "sans,8" notitle
