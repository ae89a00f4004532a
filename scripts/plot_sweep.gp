# Top-1 against GMACs per image, one line per TPS method, from a sweep's summary.csv (mean over
# seeds, error bars from the lowest to the highest seed). `tpsc sweep` runs this itself; to
# redraw by hand:
#   gnuplot -e "csv='checkpoints/sweep/summary.csv'; png='plot.png'" scripts/plot_sweep.gp
# Optional: ttl='title', methods='dtps dynamicvit' (default: every method in the file),
# ref_gmacs=0.0361; ref_top1=84.47; ref_name='dense' to mark a reference model.
# summary.csv columns: 1 method, 2 keep_ratio, 3 gmacs_per_image, 4 top1_mean, 5 top1_min,
# 6 top1_max, 7 top1_std, 8 top5_mean, 9 images_per_s, 10 train_seconds, 11 n_runs, 12 group
if (!exists("csv")) csv = 'summary.csv'
if (!exists("png")) png = 'results.png'
if (!exists("ttl")) ttl = 'Accuracy at each compute budget'
if (!exists("methods")) methods = system(sprintf("tail -n +2 '%s' | cut -d, -f1 | sort -u | tr '\\n' ' '", csv))

set terminal pngcairo size 800,520 font 'sans,10'
set output png
set datafile separator ','
set title ttl
set xlabel 'GMACs per image (inference, tokens removed)'
set ylabel 'top-1 (%)'
set key bottom right box opaque
set grid
set offsets graph 0.04, graph 0.04, graph 0.06, graph 0.06
set style data yerrorlines
set pointsize 1.2
if (exists("ref_gmacs") && exists("ref_top1")) {
    if (!exists("ref_name")) { ref_name = 'reference' }
    set label 1 ref_name at ref_gmacs, ref_top1 point pt 7 ps 1.5 offset -1, -1 right
    set arrow 1 from graph 0, first ref_top1 to graph 1, first ref_top1 nohead dt 2 lc rgb 'grey50'
}
# One file per method through awk keeps each method's points contiguous, so its line is not
# broken by the other methods' rows.
plot for [m in methods] sprintf("< awk -F, 'NR > 1 && $1 == \"%s\"' '%s'", m, csv) \
    using 3:4:5:6 title m lw 2
