from ood_dashboard.score_page import render

render("feature", "How far each image lies from its nearest train (fit) images in embedding space: "
                  "drag the red line (or type a percentile) and look at the images on both sides of it.")
